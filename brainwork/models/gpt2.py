"""GPT-2: learned positions, LayerNorm, fused QKV, GELU MLP, tied head.

Hugging Face stores GPT-2's projections as `Conv1D` with weights `(in, out)`; they are
transposed once at load so every projection here is an ordinary `nn.Linear`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from torch import nn

from brainwork.layers.activation import get_activation
from brainwork.layers.attention import KVStore
from brainwork.models.base import assign_weights
from brainwork.models.config import ModelConfig
from brainwork.models.vocab import project

_CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


class GPT2Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int) -> None:
        super().__init__()
        self.cfg, self.layer = cfg, layer
        self.c_attn = nn.Linear(cfg.hidden_size, 3 * cfg.hidden_size)
        self.c_proj = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def forward(self, x: torch.Tensor, kv: KVStore) -> torch.Tensor:
        n, d = x.shape[0], self.cfg.head_dim
        q, k, v = self.c_attn(x).view(n, 3, -1, d).unbind(1)  # each (N, H, D)
        o = kv.attend(self.layer, q, k, v, scale=self.cfg.scale, window=None)
        return self.c_proj(o.reshape(n, -1))


class GPT2Block(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.hidden_size, eps=cfg.norm_eps)
        self.attn = GPT2Attention(cfg, layer)
        self.ln_2 = nn.LayerNorm(cfg.hidden_size, eps=cfg.norm_eps)
        self.mlp = nn.ModuleDict(
            {
                "c_fc": nn.Linear(cfg.hidden_size, cfg.intermediate_size),
                "c_proj": nn.Linear(cfg.intermediate_size, cfg.hidden_size),
            }
        )
        self.act = get_activation(cfg.hidden_act)

    def forward(self, x: torch.Tensor, kv: KVStore) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), kv)
        return x + self.mlp["c_proj"](self.act(self.mlp["c_fc"](self.ln_2(x))))


class GPT2LMHeadModel(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.config = cfg
        self.transformer = nn.ModuleDict(
            {
                "wte": nn.Embedding(cfg.vocab_size, cfg.hidden_size),
                "wpe": nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size),
                "h": nn.ModuleList(GPT2Block(cfg, i) for i in range(cfg.num_layers)),
                "ln_f": nn.LayerNorm(cfg.hidden_size, eps=cfg.norm_eps),
            }
        )
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)

    def forward(
        self, input_ids: torch.Tensor, positions: torch.Tensor, kv: KVStore, keep: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Hidden states `(N, H)`, or of the rows `keep` only (selected after the blocks)."""
        t = self.transformer
        h = t["wte"](input_ids) + t["wpe"](positions)  # (N, H)
        for block in t["h"]:
            h = block(h, kv)
        return t["ln_f"](h if keep is None else h[keep])

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return project(self.lm_head, hidden).float()

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]], dtype: torch.dtype | None = None) -> None:
        def stream() -> Iterator[tuple[str, torch.Tensor]]:
            for name, tensor in weights:
                if not name.startswith(("transformer.", "lm_head.")):
                    name = "transformer." + name  # bare GPT2Model checkpoints
                if name.endswith(_CONV1D):
                    tensor = tensor.t()
                yield name, tensor

        def rename(name: str) -> str | None:
            if name == "lm_head.weight" or name.endswith((".attn.bias", ".attn.masked_bias")):
                return None  # tied head; causal-mask buffers of old checkpoints
            return name

        assign_weights(self, stream(), rename=rename, dtype=dtype, ties={"lm_head.weight": "transformer.wte.weight"})
