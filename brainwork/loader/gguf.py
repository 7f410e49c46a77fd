"""GGUF files through the `gguf` package's reader: metadata, and tensors in Hugging Face naming.

llama.cpp's converter renames tensors, permutes the Q/K rows of `llama` models for its
interleaved RoPE, and adds 1 to Gemma's norm weights. `iter_tensors()` undoes all of that, so a
model sees the same `(name, tensor)` stream from a GGUF file as from a safetensors folder.
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from brainwork.errors import ModelFormatError
from brainwork.loader.gguf_reader import GGUFContainer, TensorInfo

# Quantization types we can turn into float. The `gguf` package dequantizes them in numpy.
SUPPORTED_TYPES = frozenset(
    ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K"]
)

# GGUF block tensor suffix -> Hugging Face suffix, for the decoder family.
_LAYER_NAMES = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm",
    "post_attention_norm": "post_attention_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "ffn_post_norm": "post_feedforward_layernorm",
    "post_ffw_norm": "post_feedforward_layernorm",
}
# Gemma 3 has four norms per block; llama.cpp names the pre-MLP one `ffn_norm`.
_GEMMA3_LAYER_NAMES = {**_LAYER_NAMES, "ffn_norm": "pre_feedforward_layernorm"}
_GLOBAL_NAMES = {
    "token_embd": "model.embed_tokens",
    "output_norm": "model.norm",
    "output": "lm_head",
}
_BLOCK_RE = re.compile(r"^blk\.(\d+)\.([a-z_]+)\.(weight|bias)$")
_ROWS_PER_CHUNK = 4096  # dequantize in slices so temporaries stay small next to big embeddings


class GGUFFile:
    """One GGUF file, memory-mapped. `metadata` holds plain Python values."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelFormatError(f"{self.path}: no such GGUF file")
        try:
            self._container = GGUFContainer(self.path)
        except (ValueError, struct.error, UnicodeDecodeError, OverflowError) as exc:
            raise ModelFormatError(f"{self.path}: not a readable GGUF file ({exc})") from exc
        self.metadata: dict[str, Any] = self._container.metadata
        self.tensors = self._container.tensors
        self.architecture: str = self.metadata.get("general.architecture", "")
        if not self.architecture:
            raise ModelFormatError(f"{self.path}: metadata has no general.architecture")
        size = os.path.getsize(self.path)
        for t in self.tensors:
            if t.offset + t.n_bytes > size:
                raise ModelFormatError(
                    f"{self.path}: tensor {t.name} ends at byte {t.offset + t.n_bytes} "
                    f"but the file has {size} bytes (truncated download?)"
                )

    def get(self, key: str, default: Any = None) -> Any:
        """Metadata value under `{architecture}.{key}`."""
        return self.metadata.get(f"{self.architecture}.{key}", default)

    @property
    def tensor_types(self) -> dict[str, int]:
        """Quantization type name -> number of tensors of that type."""
        counts: dict[str, int] = {}
        for t in self.tensors:
            counts[t.qtype.name] = counts.get(t.qtype.name, 0) + 1
        return counts

    @property
    def num_parameters(self) -> int:
        return sum(t.n_elements for t in self.tensors)

    def hf_name(self, name: str) -> str:
        """GGUF tensor name -> Hugging Face name (decoder family)."""
        m = _BLOCK_RE.match(name)
        if m:
            layer, part, kind = m.groups()
            table = _GEMMA3_LAYER_NAMES if self.architecture == "gemma3" else _LAYER_NAMES
            if part not in table:
                raise ModelFormatError(f"{self.path}: unknown tensor {name!r}")
            return f"model.layers.{layer}.{table[part]}.{kind}"
        base, _, kind = name.rpartition(".")
        if base not in _GLOBAL_NAMES:
            raise ModelFormatError(f"{self.path}: unknown tensor {name!r}")
        return f"{_GLOBAL_NAMES[base]}.{kind}"

    def iter_tensors(self, dtype: torch.dtype = torch.float32) -> Iterator[tuple[str, torch.Tensor]]:
        """Yield `(hf_name, tensor)` one at a time, dequantized to `dtype`."""
        for t in self.tensors:
            name = self.hf_name(t.name)
            tensor = self.to_hf(name, self.dequantize(t, dtype))
            self.release(t)
            yield name, tensor

    def release(self, t: TensorInfo) -> None:
        """Done with `t`'s bytes: let go of its file pages (see `GGUFContainer.release`)."""
        self._container.release(t)

    def to_hf(self, name: str, tensor: torch.Tensor) -> torch.Tensor:
        """Undo the converter's changes to tensor `name` (HF naming): Q/K row order, Gemma norms.

        Works on any tensor whose rows are the weight's output rows (float weights, or the int
        codes and per-group scales of `brainwork.quant`)."""
        heads = self.permuted_heads(name)
        if heads is not None:
            return _unpermute(tensor, heads)
        if self.architecture == "gemma3" and name.endswith("norm.weight"):
            tensor -= 1.0  # llama.cpp stored (1 + w); Hugging Face keeps w
        return tensor

    def permuted_heads(self, name: str) -> int | None:
        """Head count of a `llama` Q/K tensor whose rows llama.cpp permuted, else None."""
        if self.architecture != "llama":
            return None
        n_heads = self.get("attention.head_count")
        if name.endswith(("q_proj.weight", "q_proj.bias")):
            return n_heads
        if name.endswith(("k_proj.weight", "k_proj.bias")):
            return self.get("attention.head_count_kv", n_heads)
        return None

    def raw_rows(self, t: TensorInfo) -> np.ndarray:
        """The tensor's bytes as `(rows, bytes per row)` uint8, memory-mapped (read-only)."""
        rows = t.n_elements // t.shape[-1]
        return self._container.tensor_bytes(t).reshape(rows, -1)

    def dequantize(self, t: TensorInfo, dtype: torch.dtype) -> torch.Tensor:
        """One tensor -> torch tensor of `dtype` in PyTorch shape order (rows, cols)."""
        from gguf import quants

        qtype = t.qtype.name
        if qtype not in SUPPORTED_TYPES:
            raise ModelFormatError(
                f"{self.path}: tensor {t.name} has quantization type {qtype}, which brainwork "
                f"cannot read (supported: {', '.join(sorted(SUPPORTED_TYPES))})"
            )
        out = torch.empty(t.shape, dtype=dtype)
        rows = out.view(-1, t.shape[-1])  # (rows, cols)
        src = self._container.tensor_bytes(t).reshape(rows.shape[0], -1)  # (rows, bytes per row)
        for start in range(0, rows.shape[0], _ROWS_PER_CHUNK):
            block = src[start : start + _ROWS_PER_CHUNK]
            if qtype == "F32":
                values = block.view(np.float32)
            elif qtype == "F16":
                values = block.view(np.float16)
            else:
                values = quants.dequantize(block, t.qtype)
            rows[start : start + _ROWS_PER_CHUNK] = torch.from_numpy(np.array(values, dtype=np.float32))
        return out


def _unpermute(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """Undo llama.cpp's Q/K row permutation (interleaved RoPE pairs -> rotate-half halves)."""
    rows = w.shape[0]
    return w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape).contiguous()
