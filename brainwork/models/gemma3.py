"""Gemma 3: four norms per block, q/k norms, GeGLU, sqrt(H) embedding scale, local/global RoPE."""

from __future__ import annotations

import torch
from torch import nn

from brainwork.layers.attention import KVStore
from brainwork.layers.norm import RMSNorm
from brainwork.models.config import ModelConfig
from brainwork.models.llama import Attention, CausalLM, GatedMLP

_OFFSET = 1.0  # Gemma norms scale by (1 + weight)


class Gemma3DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int) -> None:
        super().__init__()
        sliding = cfg.layer_windows[layer] is not None
        rope = cfg.rope_local if sliding and cfg.rope_local is not None else cfg.rope
        self.self_attn = Attention(cfg, layer, rope, qk_norm_offset=_OFFSET)
        self.mlp = GatedMLP(cfg)
        h, eps = cfg.hidden_size, cfg.norm_eps
        self.input_layernorm = RMSNorm(h, eps, _OFFSET)
        self.post_attention_layernorm = RMSNorm(h, eps, _OFFSET)
        self.pre_feedforward_layernorm = RMSNorm(h, eps, _OFFSET)
        self.post_feedforward_layernorm = RMSNorm(h, eps, _OFFSET)

    def forward(
        self, x: torch.Tensor, positions: torch.Tensor, kv: KVStore, keep: torch.Tensor | None = None
    ) -> torch.Tensor:
        h = self.post_attention_layernorm(self.self_attn(self.input_layernorm(x), positions, kv, keep))
        x = (x if keep is None else x[keep]) + h
        return x + self.post_feedforward_layernorm(self.mlp(self.pre_feedforward_layernorm(x)))


class Gemma3ForCausalLM(CausalLM):
    layer_cls = Gemma3DecoderLayer
    norm_offset = _OFFSET
