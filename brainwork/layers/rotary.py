"""Rotary position embeddings (rotate-half layout) with default, linear, llama3 and YaRN scaling."""

from __future__ import annotations

import ctypes
import math
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import cache

import torch
from torch import nn

from brainwork.engine import native
from brainwork.models.config import RopeConfig

_P, _I = ctypes.c_void_p, ctypes.c_int64


@cache
def _kernel() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    # q, q row stride, q heads, k, k row stride, k heads, cos, sin, rows, head dim (engine/native/rope.c)
    return native.function("rope", "rope_inplace", [_P, _I, _I, _P, _I, _I, _P, _P, _I, _I])


def inv_frequencies(cfg: RopeConfig, dim: int) -> tuple[torch.Tensor, float]:
    """Inverse frequencies `(dim // 2,)` in float32, and the factor applied to cos/sin."""
    inv = 1.0 / (cfg.theta ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
    if cfg.type == "linear":
        return inv / cfg.factor, 1.0
    if cfg.type == "llama3":
        return _llama3(inv, cfg), 1.0
    if cfg.type == "yarn":
        return _yarn(cfg, dim)
    return inv, 1.0


def _llama3(inv: torch.Tensor, cfg: RopeConfig) -> torch.Tensor:
    old_len = cfg.original_max_position or 8192
    low_wavelen = old_len / cfg.low_freq_factor
    high_wavelen = old_len / cfg.high_freq_factor
    wavelen = 2 * math.pi / inv
    scaled = torch.where(wavelen > low_wavelen, inv / cfg.factor, inv)
    smooth = (old_len / wavelen - cfg.low_freq_factor) / (cfg.high_freq_factor - cfg.low_freq_factor)
    smoothed = (1 - smooth) * scaled / cfg.factor + smooth * scaled
    medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
    return torch.where(medium, smoothed, scaled)


def _yarn(cfg: RopeConfig, dim: int) -> tuple[torch.Tensor, float]:
    base, factor = cfg.theta, cfg.factor
    old_len = cfg.original_max_position or 4096
    mscale = (
        cfg.attention_factor
        if cfg.attention_factor is not None
        else (0.1 * math.log(factor) + 1.0 if factor > 1 else 1.0)
    )

    def correction_dim(rotations: float) -> float:
        return (dim * math.log(old_len / (rotations * 2 * math.pi))) / (2 * math.log(base))

    low = max(math.floor(correction_dim(cfg.beta_fast)), 0)
    high = min(math.ceil(correction_dim(cfg.beta_slow)), dim - 1)
    if low == high:
        high += 0.001
    ramp = ((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
    pos_freqs = base ** (torch.arange(0, dim, 2).float() / dim)
    extra, inter = 1.0 / pos_freqs, 1.0 / (factor * pos_freqs)
    extrapolation = 1 - ramp
    return inter * (1 - extrapolation) + extra * extrapolation, mscale


# (positions, cos, sin) by (rope config, head_dim, dtype), for the forward pass that set it up
_SHARED: ContextVar[dict[tuple[object, ...], tuple[torch.Tensor, torch.Tensor, torch.Tensor]] | None] = ContextVar(
    "rope_tables", default=None
)


@contextmanager
def shared_tables() -> Iterator[None]:
    """Within the block (one forward pass) every layer with the same RoPE settings reuses the
    cos/sin tables of the first one given the same `positions` tensor: 8 ops a layer computed
    once, not 30 times."""
    token = _SHARED.set({})
    try:
        yield
    finally:
        _SHARED.reset(token)


class RotaryEmbedding(nn.Module):
    """Applies RoPE to q `(N, Hq, D)` and k `(N, Hkv, D)` at integer `positions` `(N,)`."""

    def __init__(self, cfg: RopeConfig, head_dim: int) -> None:
        super().__init__()
        inv, self.mscale = inv_frequencies(cfg, head_dim)
        self.register_buffer("inv_freq", inv, persistent=False)
        self.key = (cfg, head_dim)

    def tables(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin `(N, 1, D)` at `positions`, scaled, in `dtype`."""
        shared = _SHARED.get()
        key = (*self.key, dtype)
        if shared is not None and (hit := shared.get(key)) is not None and hit[0] is positions:
            return hit[1], hit[2]
        freqs = positions.float()[:, None] * self.inv_freq[None, :]  # (N, D/2)
        emb = torch.cat((freqs, freqs), dim=-1)[:, None, :]  # (N, 1, D)
        cos = (emb.cos() * self.mscale).to(dtype)
        sin = (emb.sin() * self.mscale).to(dtype)
        if shared is not None:  # holding `positions` keeps its identity from being reused
            shared[key] = (positions, cos, sin)
        return cos, sin

    def forward(self, positions: torch.Tensor, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cos, sin = self.tables(positions, q.dtype)
        return q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin

    def rotate_(self, positions: torch.Tensor, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """As `forward`, but float32 rows are rotated in place in one C call (`engine/native/rope.c`,
        bit-equal to `forward`): q and k must then be temporaries of the caller, such as the views
        of a fused q/k/v projection's output. Other inputs go through `forward`."""
        cos, sin = self.tables(positions, q.dtype)
        if not _rotatable(q, k, cos) or (fn := _kernel()) is None:
            return q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin
        n, hq, d = q.shape
        fn(q.data_ptr(), q.stride(0), hq, k.data_ptr(), k.stride(0), k.shape[1], cos.data_ptr(), sin.data_ptr(), n, d)
        return q, k


def _rotatable(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor) -> bool:
    """Float32 CPU rows `(N, H, D)` whose heads lie contiguous, with no autograd, and tables `(N, 1, D)`."""
    d = q.shape[-1]
    return (
        q.dtype == k.dtype == cos.dtype == torch.float32
        and q.device.type == "cpu"
        and q.dim() == k.dim() == 3
        and k.shape[0] == q.shape[0]
        and k.shape[-1] == d
        and d % 2 == 0
        and q.stride()[1:] == (d, 1)
        and k.stride()[1:] == (d, 1)
        and cos.is_contiguous()
        and cos.numel() == q.shape[0] * d
        and not (q.requires_grad or k.requires_grad)
    )


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)
