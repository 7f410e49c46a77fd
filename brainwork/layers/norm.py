"""RMSNorm, computed in float32 as the reference implementations do."""

from __future__ import annotations

import ctypes
from functools import cache

import torch
from torch import nn

from brainwork.engine import native

_P, _I, _F = ctypes.c_void_p, ctypes.c_int64, ctypes.c_float


@cache
def _kernel() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    # x, residual, sum, out, weight, rows, width, eps, offset (engine/native/rms_norm.c)
    return native.function("rms_norm", "rms_norm", [_P, _P, _P, _P, _P, _I, _I, _F, _F])


class RMSNorm(nn.Module):
    """`y = x / rms(x) * (offset + weight)`; Gemma stores `weight` around 0 and uses offset 1.

    Float32 rows without autograd go through one C call (`engine/native/rms_norm.c`) instead of
    six torch ops; `add` also folds in the residual sum that precedes a block's second norm."""

    def __init__(self, dim: int, eps: float, offset: float = 0.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(dim), requires_grad=False)
        self.eps = eps
        self.offset = offset

    def _native(self, x: torch.Tensor, residual: torch.Tensor | None) -> bool:
        return (
            x.dtype == torch.float32
            and self.weight.dtype == torch.float32
            and x.device.type == "cpu"
            and x.is_contiguous()
            and not (x.requires_grad or self.weight.requires_grad)
            and (residual is None or (residual.dtype == torch.float32 and residual.is_contiguous()))
            and _kernel() is not None
        )

    def _run(self, x: torch.Tensor, residual: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        h = x.shape[-1]
        out = torch.empty_like(x)
        total = torch.empty_like(x) if residual is not None else x
        _kernel()(
            x.data_ptr(),
            None if residual is None else residual.data_ptr(),
            total.data_ptr(),
            out.data_ptr(),
            self.weight.data_ptr(),
            x.numel() // h,
            h,
            self.eps,
            self.offset,
        )
        return total, out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._native(x, None):
            return self._run(x, None)[1]
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        if self.offset:  # Gemma: scale in float32, then cast
            return (h * (self.offset + self.weight.float())).to(x.dtype)
        return self.weight * h.to(x.dtype)

    def add(self, x: torch.Tensor, residual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`(x + residual, self(x + residual))`, in one pass where the C kernel applies."""
        if x.shape == residual.shape and self._native(x, residual):
            return self._run(x, residual)
        total = x + residual
        return total, self(total)
