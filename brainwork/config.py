"""Engine configuration: frozen and validated once, passed down (no module-global state)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EngineConfig:
    max_model_len: int = 2048  # context window in tokens (prompt + output)
    block_size: int = 16  # tokens per KV block
    kv_cache_gib: float = 2.0  # memory for keys and values; fewer blocks if fewer are ever needed
    num_kv_blocks: int | None = None  # exact block count (tests use tiny caches to force preemption)
    max_num_seqs: int = 128  # sequences running at once
    max_num_batched_tokens: int = 512  # tokens per forward pass (chunked prefill budget)
    enable_prefix_caching: bool = True

    def __post_init__(self) -> None:
        for name in ("max_model_len", "block_size", "max_num_seqs", "max_num_batched_tokens"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {getattr(self, name)!r}")
        if self.kv_cache_gib <= 0:
            raise ValueError(f"kv_cache_gib must be > 0, got {self.kv_cache_gib}")
        if self.num_kv_blocks is not None and self.num_kv_blocks < 1:
            raise ValueError(f"num_kv_blocks must be >= 1, got {self.num_kv_blocks}")

    def num_blocks(self, bytes_per_block: int) -> int:
        """Blocks that fit the memory budget, but no more than max_num_seqs full contexts need."""
        if self.num_kv_blocks is not None:
            return self.num_kv_blocks
        fit = int(self.kv_cache_gib * 2**30) // bytes_per_block
        need = self.max_num_seqs * -(-self.max_model_len // self.block_size)
        return max(1, min(fit, need))
