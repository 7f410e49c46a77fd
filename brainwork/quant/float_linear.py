"""`FloatLinear`: a float32 `nn.Linear` on the fastest CPU path for its batch size.

torch's default float32 matmul runs a decode step's few rows on one core, reading the weight at
~10 GB/s. Measured on 30 layers of SmolLM2's shapes (2 threads, AVX-512 EPYC, same run):

| rows | F.linear | oneDNN `_linear_pointwise` | `small_gemm.c` |
|---|---|---|---|
| 1 | 41.4 ms | 23.1-26.2 ms | 18.9-21.4 ms |
| 4 | 50.6 ms | 30.3 ms | 22.5 ms |
| 16 | 71.9 ms | 40.8 ms | 39.3 ms |
| 64 | 139 ms | 102 ms | 111 ms |
| 512 | 661 ms | 554 ms | |

So up to `small_rows` rows run on the C kernel (`engine/native/small_gemm.c`: the weight's rows
split over the threads, each read once for all rows of x, every output one fixed-order dot
product, so a row's result does not depend on its batch company), larger calls on oneDNN, and
F.linear only where neither exists. The class is swapped in place of `nn.Linear`
(`float_linears`), so parameters, and a head tied to the embedding, are not copied.
"""

from __future__ import annotations

import ctypes
from functools import cache

import torch
from torch import nn
from torch.nn import functional as F

from brainwork.engine import native
from brainwork.models.vocab import ONEDNN, onednn_linear

_P, _I = ctypes.c_void_p, ctypes.c_int64
SIGNATURE = [_P, _P, _P, _P, _I, _I, _I]  # x, w, bias, out, M, K, N


@cache
def _kernel() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    return native.function("small_gemm", "small_gemm", SIGNATURE)


def available() -> bool:
    return _kernel() is not None


def small_gemm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """`x (M, K) @ weight (N, K)^T + bias` float32 through the C kernel -> `(M, N)`."""
    fn = _kernel()
    if fn is None:
        raise RuntimeError("the small-batch GEMM kernel is not built (no C compiler, or BRAINWORK_NATIVE=0)")
    x = x.contiguous()
    out = torch.empty(x.shape[0], weight.shape[0], dtype=torch.float32)  # (M, N)
    b = 0 if bias is None else bias.data_ptr()
    fn(x.data_ptr(), weight.data_ptr(), b, out.data_ptr(), x.shape[0], x.shape[1], weight.shape[0])
    return out


class FloatLinear(nn.Linear):
    small_rows = 16  # up to here the C kernel: measured even with oneDNN at 16-24 rows

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // self.in_features if x.dim() else 0
        if rows == 0 or x.dtype != torch.float32 or not x.is_cpu or torch.is_grad_enabled():
            return F.linear(x, self.weight, self.bias)
        flat = x.reshape(rows, self.in_features)
        if rows <= self.small_rows and available():
            out = small_gemm(flat, self.weight, self.bias)
        elif ONEDNN:
            out = onednn_linear(flat, self.weight, self.bias)
        else:
            return F.linear(x, self.weight, self.bias)
        return out.view(*x.shape[:-1], self.out_features)


def float_linears(model: nn.Module) -> int:
    """Swap every contiguous float32 `nn.Linear` of `model` for `FloatLinear`, in place; returns how many."""
    swapped = 0
    for m in model.modules():
        w, b = getattr(m, "weight", None), getattr(m, "bias", None)
        plain = type(m) is nn.Linear and w is not None and w.dtype == torch.float32 and w.is_contiguous()
        if plain and (b is None or (b.dtype == torch.float32 and b.is_contiguous())):
            m.__class__ = FloatLinear
            swapped += 1
    return swapped
