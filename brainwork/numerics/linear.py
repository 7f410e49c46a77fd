"""`GGMLLinear`: a matmul whose activations are quantized as ggml quantizes them for its weight type."""

from __future__ import annotations

import torch
from torch import nn

from brainwork.numerics.actquant import VEC_DOT_TYPE, q8_codes, quantize_q8_0, quantize_q8_1, quantize_q8_k


class GGMLLinear(nn.Module):
    """`y = quant(x) @ W^T (+ Q8_1 block-sum term) + b` for a weight stored as GGUF `qtype`.

    `weight` `(N, K)` is the dequantized GGUF matrix (exact: every GGUF block decodes to float32
    without rounding); `offsets` `(N, K/32)` are the per-block `m` of Q4_1/Q5_1 weights, which
    ggml multiplies by the activation block's fp16 sum."""

    def __init__(
        self, weight: torch.Tensor, bias: torch.Tensor | None, qtype: str, offsets: torch.Tensor | None = None
    ) -> None:
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.qtype = qtype
        self.vec_type = VEC_DOT_TYPE.get(qtype)  # None: a float weight, activations stay float
        self.register_buffer("weight", weight.float().contiguous())
        self.bias = None if bias is None else nn.Parameter(bias.float(), requires_grad=False)
        if self.vec_type == "Q8_1" and offsets is None:
            raise ValueError(f"a {qtype} weight needs its block offsets")
        self.register_buffer("offsets", None if offsets is None else offsets.float().contiguous())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(-1, self.in_features).float()  # (M, K)
        extra = None
        if self.vec_type == "Q8_0":
            x2 = quantize_q8_0(x2)[0]
        elif self.vec_type == "Q8_1":
            x2, s_err = quantize_q8_1(x2)
            extra = s_err @ self.offsets.t()  # (M, K/32) @ (K/32, N)
        elif self.vec_type == "Q8_K":
            x2 = quantize_q8_k(x2)
        y = x2 @ self.weight.t()  # (M, N)
        if extra is not None:
            y = y + extra
        if self.bias is not None:
            y = y + self.bias
        return y.view(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, qtype={self.qtype}"


def _fma(acc: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """float32 fma(a, b, acc), emulated exactly in double (the products here fit in 53 bits)."""
    return (acc.double() + a.double() * b.double()).float()


def _addcmul_is_fused() -> bool:
    """torch's float32 addcmul runs as one fma on CPUs with FMA (checked, not assumed)."""
    a = torch.tensor([1.0 + 2.0**-12] * 9)
    c = torch.tensor([-(1.0 + 2.0**-11)] * 9)
    return bool((torch.addcmul(c, a, a) == _fma(c, a, a)).all()) and bool((_fma(c, a, a) != 0).all())


_FUSED = _addcmul_is_fused()


def fma_(acc: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """float32 `fma(a, b, acc)`: one torch op where addcmul is fused, the double emulation otherwise."""
    return torch.addcmul(acc, a, b) if _FUSED else _fma(acc, a, b)


def hsum8(x: torch.Tensor) -> torch.Tensor:
    """ggml's hsum_float_8 over the last dim (8 lanes): (hi + lo), then pairs, in that order."""
    t = x[..., 4:] + x[..., :4]
    return (t[..., 0] + t[..., 2]) + (t[..., 1] + t[..., 3])


_LANE_BUDGET = 1 << 23  # floats of lane sums held at once (32 MB)


class GGMLBlockLinear(nn.Module):
    """A Q4_0/Q4_1/Q5_0/Q8_0 matmul reproducing ggml's AVX2 kernels bit for bit: per 32-block,
    8 int32 lanes of 4 products each, `acc = fma(d_w * d_x, lanes, acc)` block after block, one
    horizontal sum; Q4_1 adds `sum_b m_w * s_x` accumulated in float32 in block order."""

    def __init__(
        self, codes: torch.Tensor, d: torch.Tensor, m: torch.Tensor | None, bias: torch.Tensor | None, qtype: str
    ) -> None:
        super().__init__()
        self.out_features, self.in_features = codes.shape
        self.qtype = qtype
        nb = self.in_features // 32
        # (nb * 8, 4, N): weight codes grouped by (block, lane), ready for one bmm per call
        self.register_buffer("codes", codes.float().view(-1, nb * 8, 4).permute(1, 2, 0).contiguous())
        self.register_buffer("d", d.float().contiguous())  # (N, nb)
        self.register_buffer("m", None if m is None else m.float().contiguous())
        self.bias = None if bias is None else nn.Parameter(bias.float(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(-1, self.in_features).float()
        t, nb = x2.shape[0], self.in_features // 32
        qx, d_x = q8_codes(x2)  # (T, nb, 32), (T, nb)
        d_x16 = d_x.half().float()
        qxl = qx.view(t, nb * 8, 4).transpose(0, 1)  # (nb*8, T, 4): (block, lane) groups of 4 codes
        y = torch.empty(t, self.out_features)
        # output rows in slices: the lane sums of one slice are (nb*8, T, n) floats
        step = max(32, _LANE_BUDGET // max(1, nb * 8 * t))
        for lo in range(0, self.out_features, step):
            hi = min(lo + step, self.out_features)
            lanes = torch.bmm(qxl, self.codes[:, :, lo:hi])  # (nb*8, T, n) int32 lane sums, exact
            lanes = lanes.view(nb, 8, t, hi - lo)
            dd = self.d[lo:hi].t()[:, None, :] * d_x16.t()[:, :, None]  # (nb, T, n): fp16 x fp16, exact
            acc = torch.zeros(8, t, hi - lo)  # ggml's 8 float32 lanes
            for b in range(nb):
                acc = fma_(acc, dd[b], lanes[b])  # acc = fma(d_w * d_x, lanes, acc), block after block
            y[:, lo:hi] = hsum8(acc.permute(1, 2, 0))
        if self.m is not None:
            s16 = (d_x * qx.sum(-1)).half().float()  # (T, nb)
            summs = torch.zeros(t, self.out_features)
            for b in range(nb):  # float32, block order; each product of two fp16 values is exact
                summs = torch.addcmul(summs, s16[:, b][:, None], self.m[:, b][None, :])
            y = y + summs
        if self.bias is not None:
            y = y + self.bias
        return y.view(*shape[:-1], self.out_features)
