"""Sentence pooling over token states, with the semantics of sentence-transformers' `Pooling`.

Every function takes `hidden (B, T, H)` and `mask (B, T)` (1 = real token, 0 = padding) and
returns `(B, H)`. `pool` concatenates several modes in the order it is given, as
sentence-transformers does for a multi-mode Pooling module.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")


def _float_mask(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average of the real tokens; padding contributes nothing."""
    m = _float_mask(hidden, mask)
    summed = (hidden * m).sum(dim=1)  # (B, H)
    count = m.sum(dim=1).clamp(min=1e-9)  # (B, 1); clamp keeps an all-padding row finite
    return summed / count


def mean_sqrt_len_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sum of the real tokens divided by sqrt(number of real tokens)."""
    m = _float_mask(hidden, mask)
    summed = (hidden * m).sum(dim=1)  # (B, H)
    return summed / torch.sqrt(m.sum(dim=1).clamp(min=1e-9))


def cls_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """State of the first real token (position 0 under right padding)."""
    first = mask.to(torch.int32).argmax(dim=1)  # (B,)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), first]


def max_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-feature maximum over the real tokens."""
    return hidden.masked_fill(mask.unsqueeze(-1) == 0, float("-inf")).max(dim=1).values


def weighted_mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean weighted by position (1, 2, ...) counted from the first real token."""
    positions = torch.arange(1, hidden.shape[1] + 1, device=hidden.device, dtype=hidden.dtype)
    start = mask.to(torch.int32).argmax(dim=1)  # (B,) left padding shifts the first weight
    weights = (positions.view(1, -1) - start.view(-1, 1)).unsqueeze(-1)  # (B, T, 1)
    w = _float_mask(hidden, mask) * weights
    return (hidden * w).sum(dim=1) / w.sum(dim=1).clamp(min=1e-9)


def last_token_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """State of the last real token."""
    t = hidden.shape[1]
    positions = torch.arange(t, device=hidden.device).view(1, -1)  # (1, T)
    last = torch.where(mask.bool(), positions, -1).max(dim=1).values.clamp(min=0)  # (B,)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


_POOLERS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "cls": cls_pool,
    "max": max_pool,
    "mean": mean_pool,
    "mean_sqrt_len_tokens": mean_sqrt_len_pool,
    "weightedmean": weighted_mean_pool,
    "lasttoken": last_token_pool,
}


def pool(hidden: torch.Tensor, mask: torch.Tensor, modes: Sequence[str]) -> torch.Tensor:
    """Concatenation of each mode's `(B, H)` result: `(B, H * len(modes))`."""
    if not modes:
        raise ValueError("modes must name at least one pooling mode")
    for mode in modes:
        if mode not in _POOLERS:
            raise ValueError(f"modes: unknown pooling mode {mode!r}; known: {POOLING_MODES}")
    return torch.cat([_POOLERS[mode](hidden, mask) for mode in modes], dim=-1)


def l2_normalize(x: torch.Tensor) -> torch.Tensor:
    """Unit-length rows along the last dimension (zero rows stay zero)."""
    return F.normalize(x, p=2.0, dim=-1)
