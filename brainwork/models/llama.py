"""The Llama family: Llama, Mistral, Qwen2, SmolLM2 (pre-norm blocks, GQA, RoPE, SwiGLU)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

import torch
from torch import nn
from torch.nn import functional as F

from brainwork.layers.activation import get_activation
from brainwork.layers.attention import KVStore
from brainwork.layers.norm import RMSNorm
from brainwork.layers.rotary import RotaryEmbedding, shared_tables
from brainwork.models.base import assign_weights
from brainwork.models.config import ModelConfig, RopeConfig
from brainwork.models.vocab import project


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int, rope: RopeConfig, qk_norm_offset: float | None = None) -> None:
        super().__init__()
        self.layer, self.cfg = layer, cfg
        hq, hkv, d = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
        self.q_proj = nn.Linear(cfg.hidden_size, hq * d, bias=cfg.attention_bias)
        self.k_proj = nn.Linear(cfg.hidden_size, hkv * d, bias=cfg.attention_bias)
        self.v_proj = nn.Linear(cfg.hidden_size, hkv * d, bias=cfg.attention_bias)
        self.o_proj = nn.Linear(hq * d, cfg.hidden_size, bias=cfg.attention_out_bias)
        self.qkv_proj: nn.Module | None = None  # q, k, v in one matmul (brainwork.quant.transform.fuse_projections)
        self.rope_cfg = rope
        self.rotary = RotaryEmbedding(rope, d)
        self.window = cfg.layer_windows[layer]
        # Gemma 3 normalises q and k per head before RoPE
        self.q_norm = RMSNorm(d, cfg.norm_eps, qk_norm_offset) if qk_norm_offset is not None else None
        self.k_norm = RMSNorm(d, cfg.norm_eps, qk_norm_offset) if qk_norm_offset is not None else None

    def reset_buffers(self) -> None:
        self.rotary = RotaryEmbedding(self.rope_cfg, self.cfg.head_dim)

    def forward(
        self, x: torch.Tensor, positions: torch.Tensor, kv: KVStore, keep: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Every row's keys and values go to `kv`; the output is the rows `keep` (all if None)."""
        n, d = x.shape[0], self.cfg.head_dim
        if self.qkv_proj is not None:
            hq, hkv = self.cfg.num_heads * d, self.cfg.num_kv_heads * d
            q2, k2, v2 = self.qkv_proj(x).split([hq, hkv, hkv], dim=-1)  # (N, Hq*D + 2 Hkv*D) split
            q, k, v = q2.view(n, -1, d), k2.view(n, -1, d), v2.view(n, -1, d)
        else:
            q = self.q_proj(x).view(n, -1, d)  # (N, Hq, D)
            k = self.k_proj(x).view(n, -1, d)  # (N, Hkv, D)
            v = self.v_proj(x).view(n, -1, d)
        if self.q_norm is not None and self.k_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = self.rotary.rotate_(positions, q, k)  # in place: q, k are this call's temporaries
        o = kv.attend(self.layer, q, k, v, scale=self.cfg.scale, window=self.window).reshape(n, -1)
        return self.o_proj(o if keep is None else o[keep])


class GatedMLP(nn.Module):
    """SwiGLU / GeGLU: down(act(gate(x)) * up(x))."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=cfg.mlp_bias)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=cfg.mlp_bias)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=cfg.mlp_bias)
        self.gate_up_proj: nn.Module | None = None  # gate and up in one matmul (fuse_projections)
        self.act = get_activation(cfg.hidden_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gate_up_proj is not None:
            gate, up = self.gate_up_proj(x).chunk(2, dim=-1)  # (N, 2I) -> 2 x (N, I)
            # SiLU in place on the fused output (a temporary): one (N, I) pass and buffer fewer,
            # 20% of this pair's time at 512 rows
            act = F.silu(gate, inplace=True) if self.act is F.silu else self.act(gate)
            return self.down_proj(torch.mul(act, up))
        return self.down_proj(self.act(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.norm_eps)
        self.self_attn = Attention(cfg, layer, cfg.rope)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.norm_eps)
        self.mlp = GatedMLP(cfg)

    def forward(
        self, x: torch.Tensor, positions: torch.Tensor, kv: KVStore, keep: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The block's output for rows `keep` (all if None); every row's keys and values are cached."""
        h = self.self_attn(self.input_layernorm(x), positions, kv, keep)
        x, normed = self.post_attention_layernorm.add(x if keep is None else x[keep], h)
        return x + self.mlp(normed)


class BlockStack(Protocol):
    """All blocks of a `DecoderModel` as one call, for the KV stores it `accepts`."""

    def accepts(self, kv: KVStore) -> bool: ...

    def __call__(self, h: torch.Tensor, positions: torch.Tensor, kv: KVStore) -> torch.Tensor: ...


class DecoderModel(nn.Module):
    """Embeddings, blocks and the final norm; names match Hugging Face's `model.*`."""

    def __init__(self, cfg: ModelConfig, layer_cls: type[nn.Module], norm_offset: float = 0.0) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(layer_cls(cfg, i) for i in range(cfg.num_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.norm_eps, norm_offset)
        self.embedding_scale = cfg.embedding_scale
        # every block in one native call (brainwork.numerics.native_stack), set for models it covers
        self.stack: BlockStack | None = None
        self.select_late = False  # True: `keep` rows are taken after the last block, not inside it

    def forward(
        self, input_ids: torch.Tensor, positions: torch.Tensor, kv: KVStore, keep: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Hidden states `(N, H)`, or `(K, H)` of the rows `keep` only: the last block then runs its
        output projection and MLP on those rows alone (its keys and values still cover every row),
        as llama.cpp does for the rows it returns. A prefill chunk needs one row of 512."""
        h = self.embed_tokens(input_ids)  # (N, H)
        if self.embedding_scale is not None:  # Gemma scales by sqrt(H), rounded to the weight dtype
            h = h * torch.tensor(self.embedding_scale, dtype=h.dtype)
        stack = self.stack
        if stack is not None and stack.accepts(kv):
            h = stack(h, positions, kv)
            return self.norm(h if keep is None else h[keep])
        *body, last = self.layers
        with shared_tables():  # one RoPE table for all layers
            for layer in body:
                h = layer(h, positions, kv)
            if self.select_late and keep is not None:
                return self.norm(last(h, positions, kv)[keep])
            return self.norm(last(h, positions, kv, keep))


class CausalLM(nn.Module):
    """`forward` returns hidden states (N, H); `compute_logits` projects only the rows asked for."""

    layer_cls: type[nn.Module] = DecoderLayer
    norm_offset: float = 0.0

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.config = cfg
        self.model = DecoderModel(cfg, self.layer_cls, self.norm_offset)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        if cfg.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    def forward(
        self, input_ids: torch.Tensor, positions: torch.Tensor, kv: KVStore, keep: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.model(input_ids, positions, kv, keep)

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = project(self.lm_head, hidden).float()  # (M, V)
        cap = self.config.final_logit_softcap
        return logits if cap is None else torch.tanh(logits / cap) * cap

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]], dtype: torch.dtype | None = None) -> None:
        tied = self.config.tie_word_embeddings

        def rename(name: str) -> str | None:
            if name.startswith("model.language_model."):  # Gemma 3 multimodal checkpoints
                name = "model." + name[len("model.language_model.") :]
            if "rotary_emb" in name or (tied and name == "lm_head.weight"):
                return None
            return name

        def ties() -> dict[str, str]:
            # a quantized head or a GGUF-row embedding (brainwork.quant) is not tied: each has its own form
            plain = isinstance(self.lm_head, nn.Linear) and isinstance(self.model.embed_tokens, nn.Embedding)
            return {"lm_head.weight": "model.embed_tokens.weight"} if tied and plain else {}

        assign_weights(self, weights, rename=rename, dtype=dtype, ties=ties)
