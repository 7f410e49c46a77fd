"""Attention over a KV store that the caller owns.

Models see one flat batch: N tokens from any number of sequences. Where keys and values live
(a contiguous per-sequence cache now, a paged cache in the engine) is the business of the
`KVStore` passed into `forward`; attention layers only project, rotate and hand over.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn


class KVStore(Protocol):
    """Stores this step's keys/values of `layer` and attends the step's queries over its history."""

    def attend(
        self,
        layer: int,
        q: torch.Tensor,  # (N, Hq, D)
        k: torch.Tensor,  # (N, Hkv, D)
        v: torch.Tensor,  # (N, Hkv, D)
        *,
        scale: float,
        window: int | None,
    ) -> torch.Tensor:  # (N, Hq, D)
        ...


def attention_reference(
    q: torch.Tensor,  # (Hq, Tq, D)
    k: torch.Tensor,  # (Hkv, Tk, D): history first, then this step's keys
    v: torch.Tensor,  # (Hkv, Tk, D)
    *,
    scale: float,
    window: int | None,
) -> torch.Tensor:  # (Hq, Tq, D)
    """Causal attention of the last `Tq` positions over all `Tk`, optionally within a window."""
    tq, tk = q.shape[1], k.shape[1]
    mask = None
    if tq > 1 or (window is not None and tk > window):
        q_pos = torch.arange(tk - tq, tk)[:, None]  # (Tq, 1)
        k_pos = torch.arange(tk)[None, :]  # (1, Tk)
        mask = k_pos <= q_pos
        if window is not None:
            mask &= q_pos - k_pos < window
    return nn.functional.scaled_dot_product_attention(
        q[None], k[None], v[None], attn_mask=mask, scale=scale, enable_gqa=True
    )[0]
