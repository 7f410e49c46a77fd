"""`QuantLinear`: a `nn.Linear` whose weight stays int4 (group 32) or int8 (per row) in memory.

Measured on this project's CPU (AMD EPYC Zen3, AVX2, 2 threads; see docs/ARCHITECTURE.md):
torch's weight-only kernels are fast only with bfloat16 activations (their float32 paths are not
vectorized: 10x slower), and at prefill sizes (M >= `dense_rows` tokens) they are 2-3x slower
than float32 `F.linear`. So small batches (decode) cast the activations to bfloat16 and call the
packed kernel; large ones dequantize the weight slice by slice into float32 and use `F.linear`,
whose cost is then dominated by the matmul, not the dequantization.
"""

from __future__ import annotations

import threading

import torch
from torch import nn

from brainwork.quant.packing import GROUP, dequantize_int4, int4_tile, pack_int4, scales_zeros

_KERNEL_DTYPE = torch.bfloat16
_DENSE_SLICE = 8192  # output rows dequantized at a time on the dense path (a multiple of any int4 tile)
_local = threading.local()  # the dense path's weight buffer: one per thread, shared by every layer


class QuantLinear(nn.Module):
    """`y = x @ W^T + b` with `W` packed; `kind` is "int4" or "int8"."""

    # M from which the dense path (dequantize + F.linear) is taken. Measured per element of W on
    # 2 cores: dequantizing costs ~2.8 ns once, the bf16 kernel ~0.1 ns per row of x, float32
    # F.linear ~0.06 ns: even near M = 65. 96 keeps a 64-stream decode step on the kernels.
    dense_rows = 96

    def __init__(self, in_features: int, out_features: int, kind: str, bias: torch.Tensor | None = None) -> None:
        super().__init__()
        self.in_features, self.out_features, self.kind = in_features, out_features, kind
        self.bias = None if bias is None else nn.Parameter(bias, requires_grad=False)

    @classmethod
    def int4(
        cls, codes: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, bias: torch.Tensor | None = None
    ) -> QuantLinear:
        """codes `(N, K)` uint8 0..15, scale/zero `(N, K/32)`: `w = (q - 8) * scale + zero`."""
        n, k = codes.shape
        m = cls(k, n, "int4", bias)
        m.register_buffer("packed", pack_int4(codes))  # (N, K/2) uint8
        m.register_buffer("scales_zeros", scales_zeros(scale, zero, _KERNEL_DTYPE))  # (K/32, N, 2)
        return m

    @classmethod
    def int8(cls, q: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor | None = None) -> QuantLinear:
        """q `(N, K)` int8, scales `(N,)`: `w = q * scale`."""
        n, k = q.shape
        m = cls(k, n, "int8", bias)
        m.register_buffer("weight_int8", q.contiguous())
        m.register_buffer("scales", scales.to(_KERNEL_DTYPE))
        return m

    @staticmethod
    def supports_int4(out_features: int, in_features: int) -> bool:
        return out_features % int4_tile() == 0 and in_features % GROUP == 0

    def dequantize(
        self, rows: slice = slice(None), dtype: torch.dtype = torch.float32, out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The float weight `(n, K)` of output rows `rows` (into `out`'s storage if given)."""
        if self.kind == "int4":
            return dequantize_int4(self.packed[rows], self.scales_zeros[:, rows], dtype, out)
        q = self.weight_int8[rows]
        w = torch.empty(q.shape, dtype=dtype) if out is None else out.view(q.shape)
        return w.copy_(q).mul_(self.scales[rows].to(dtype)[:, None])

    def _packed_mm(self, x: torch.Tensor) -> torch.Tensor:
        xb = x.to(_KERNEL_DTYPE)
        if self.kind == "int4":
            return torch.ops.aten._weight_int4pack_mm_for_cpu(xb, self.packed, GROUP, self.scales_zeros)
        return torch.ops.aten._weight_int8pack_mm(xb, self.weight_int8, self.scales)

    def _dense_mm(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        out = torch.empty(x.shape[0], self.out_features)
        n_rows = min(self.out_features, _DENSE_SLICE)
        # A tensor made under inference mode cannot be written outside it (and the reverse is a
        # copy torch warns about), so each mode keeps its own buffer.
        key = "buf_inference" if torch.is_inference_mode_enabled() else "buf"
        buf = getattr(_local, key, None)
        if buf is None or buf.numel() < n_rows * self.in_features:
            buf = torch.empty(n_rows * self.in_features)
            setattr(_local, key, buf)
        for start in range(0, self.out_features, _DENSE_SLICE):
            rows = slice(start, start + _DENSE_SLICE)
            n = min(_DENSE_SLICE, self.out_features - start)
            w = self.dequantize(rows, out=buf[: n * self.in_features])
            torch.matmul(xf, w.t(), out=out[:, rows])
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(-1, self.in_features)  # (M, K)
        y = self._dense_mm(x2) if x2.shape[0] >= self.dense_rows else self._packed_mm(x2)
        y = y.to(x.dtype)
        if self.bias is not None:
            y = y + self.bias
        return y.view(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, kind={self.kind}"
