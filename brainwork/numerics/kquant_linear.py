"""`GGMLKQuantLinear`: Q4_K and Q6_K matmuls reproducing llama.cpp's x86 (AVX2) CPU kernels bit for bit.

Activations are quantized to Q8_K (blocks of 256, float32 scale, int8 codes). Every kernel first
forms exact integer sums, then folds them in float32 with FMAs, super-block after super-block:

- Q6_K (`ggml_vec_dot_q6_K_q8_K`): 8 int32 lanes per super-block; lane `l` holds the values at
  positions `p` with `(p % 32) // 4 == l`, `sum q * q8 * scale` over unsigned codes `q` (0..63),
  minus `32 * (bsum[2l] * scale[2l] + bsum[2l+1] * scale[2l+1])` (the -32 offset through the
  16-value sums of the activation codes). `acc_l = fma(d_y * d_w, lane, acc_l)`, then `hsum8`.
- Q4_K, repacked (llama.cpp's CPU_REPACK buffer, `block_q4_Kx8`, used whenever the output count
  is a multiple of 8): integer sums `I = sum_j scale_j * (q . q8)_j`, `Imin = sum_j min_j *
  bsum32_j`, folded as `acc = fma(I, d_w * d_y, acc)`, `acc_min = fma(Imin, dmin_w * d_y,
  acc_min)`, result `acc - acc_min`. Full groups of 4 activation rows go through
  `ggml_gemm_q4_K_8x8_q8_K` (one FMA per 64 values, i.e. per pair of sub-blocks) with
  activations from `ggml_quantize_mat_q8_K_4x8` (which picks the sign of the scale
  differently); the remaining `M % 4` rows through `ggml_gemv_q4_K_8x8_q8_K` (one FMA per
  super-block) with `quantize_row_q8_K`.
- Q4_K, not repacked (`ggml_vec_dot_q4_K_q8_K`): lanes as Q6_K for the scaled part, 4 float
  lanes `fma(-d_y * dmin_w, m[2i] * s[2i] + m[2i+1] * s[2i+1], .)` for the mins, then
  `hsum8(acc) + ((m0 + m2) + (m1 + m3))`.

- Q6_K, and Q4_K not repacked, for 8 or more activation rows (`ggml_compute_forward_mul_mat_tiled`,
  ggml-cpu/tiled, AVX2 microtiles; on unless GGML_CPU_TILED_MM=0): one exact int32 per super-block,
  `S1 = sum_p scale * q * q8` (Q6_K: `q - 32`), for Q4_K `S2 = sum_j min_j * bsum32_j`;
  `res = d_w * S1` (Q4_K: `fma(-dmin_w, S2, d_w * S1)`), `acc = fma(res, d_y, acc)` super-block
  after super-block.

Integer sums are computed as float32 matrix products over groups small enough that every partial
sum stays below 2^24 (hence exact), combined in float64.
"""

from __future__ import annotations

import torch
from torch import nn

from brainwork.numerics import native
from brainwork.numerics.linear import fma_ as _fma
from brainwork.numerics.linear import hsum8
from brainwork.numerics.rows import per_chunk

QK_K = 256


def q8_k_codes(x: torch.Tensor, mat4: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """x `(M, K)` float32 -> Q8_K codes `(M, K/256, 256)` (integers, as float32) and scales d
    `(M, K/256)` float32.

    `quantize_row_q8_K` (mat4=False): `max` is the first value of largest magnitude,
    `iscale = -127 / max`, codes `min(127, round_half_even(iscale * x))`, `d = 1 / iscale`.
    `ggml_quantize_mat_q8_K_4x8` (mat4=True, AVX2): `iscale = -127 / amax` if some value equals
    `+amax`, else `127 / amax`; the same rounding."""
    m, k = x.shape
    xb = x.reshape(m, k // QK_K, QK_K)
    amax = xb.abs().amax(-1, keepdim=True)  # (M, nb, 1)
    if mat4:
        pos = (xb == amax).any(-1, keepdim=True)
        iscale = torch.where(pos, -127.0 / amax.double(), 127.0 / amax.double())
    else:
        idx = xb.abs().argmax(-1, keepdim=True)  # first largest, as the C loop's strict `>`
        iscale = -127.0 / xb.gather(-1, idx).double()
    nz = amax > 0
    iscale = torch.where(nz, iscale, torch.zeros_like(iscale)).float()  # correctly rounded quotient
    q = torch.round(iscale * xb).clamp_(-128, 127)
    d = torch.where(nz, 1.0 / iscale.double(), torch.zeros_like(iscale, dtype=torch.float64)).float()
    return q, d[..., 0]


class GGMLKQuantLinear(nn.Module):
    """`y = x W^T + b` for a Q4_K / Q6_K GGUF weight with llama.cpp's CPU arithmetic.

    Q4_K: `codes` `(N, K)` 0..15, `scales`, `mins` `(N, K/256, 8)`, `d`, `dmin` `(N, K/256)`.
    Q6_K: `codes` `(N, K)` 0..63 (unsigned; the weight is `d * scale * (q - 32)`), `scales`
    `(N, K/256, 16)` signed, `d` `(N, K/256)`. `repacked` (Q4_K): None picks llama.cpp's choice on
    AVX2 (repacked when N % 8 == 0). `tiled_min_rows`: activation row count from which ggml takes its
    tiled K-quant matmul for weights that are not repacked (None: never)."""

    def __init__(
        self,
        qtype: str,
        codes: torch.Tensor,
        scales: torch.Tensor,
        d: torch.Tensor,
        bias: torch.Tensor | None = None,
        mins: torch.Tensor | None = None,
        dmin: torch.Tensor | None = None,
        repacked: bool | None = None,
        tiled_min_rows: int | None = 8,
        c_kernels: bool | None = None,
    ) -> None:
        super().__init__()
        if qtype not in ("Q4_K", "Q6_K"):
            raise ValueError(f"GGMLKQuantLinear does not handle {qtype}")
        self.qtype = qtype
        self.out_features, self.in_features = codes.shape
        n, k = codes.shape
        nb = k // QK_K
        self.repacked = (qtype == "Q4_K" and n % 8 == 0) if repacked is None else bool(repacked and qtype == "Q4_K")
        self.tiled_min_rows = tiled_min_rows
        self.register_buffer("d", d.to(torch.float32).contiguous())  # (N, nb)
        self.bias = None if bias is None else nn.Parameter(bias.detach().float(), requires_grad=False)
        # C kernels (Q6_K, repacked Q4_K; None: wherever a compiler is) read the integers as unpacked,
        # (codes, scales[, mins]); the float forms below are the torch fallback, not built beside them
        self.c_form: tuple[torch.Tensor, ...] | None = None
        if c_kernels is None:
            c_kernels = qtype == "Q6_K" or self.repacked
        if c_kernels and native.available() and (qtype == "Q6_K" or self.repacked):
            ints = [codes.to(torch.uint8), scales.to(torch.int8 if qtype == "Q6_K" else torch.uint8)]
            if mins is not None and dmin is not None:
                ints.append(mins.to(torch.uint8))
                self.register_buffer("dmin", dmin.to(torch.float32).contiguous())  # (N, nb)
            self.c_form = tuple(t.contiguous() for t in ints)
            return
        c = codes.to(torch.float32)
        sc = scales.to(torch.float32)
        if qtype == "Q6_K":
            # codes * scale, grouped (block, lane, half of the lane's 32 values): (nb*16, 16, N)
            w = (c.view(n, nb, 16, 16) * sc[..., None]).view(n, nb, 2, 4, 8, 4)  # (n, b, half, g, lane, e)
            w = w.permute(1, 4, 2, 3, 5, 0).reshape(nb * 16, 16, n)
            self.register_buffer("wq", w.contiguous())
            # tiled: (q - 32) * scale in 8 groups of 32 values per block (|sum| < 2^24): (nb*8, 32, N)
            wt = ((c - 32.0).view(n, nb, 16, 16) * sc[..., None]).view(n, nb * 8, 32).permute(1, 2, 0)
            self.register_buffer("wt", wt.contiguous())
            # -32 offset: lane l takes sub-blocks 2l, 2l+1
            self.register_buffer("scales", sc.contiguous())  # (N, nb, 16)
        else:
            w = c.view(n, nb, 8, 32) * sc[..., None]  # (n, b, j, 32)
            if self.repacked:  # per block: 4 groups of 64 values (2 sub-blocks)
                w = w.view(n, nb, 4, 64).permute(1, 2, 3, 0).reshape(nb * 4, 64, n)
            else:  # per block: 8 lanes of 32 values ((p % 32) // 4 == lane)
                w = w.view(n, nb, 8, 8, 4).permute(1, 3, 2, 4, 0).reshape(nb * 8, 32, n)
            self.register_buffer("wq", w.contiguous())
            self.register_buffer("mins", mins.to(torch.float32).contiguous())  # (N, nb, 8)
            self.register_buffer("dmin", dmin.to(torch.float32).contiguous())  # (N, nb)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        y = per_chunk(self._rows, x.reshape(-1, self.in_features).float())
        if self.bias is not None:
            y = y + self.bias
        return y.view(*shape[:-1], self.out_features)

    def _rows(self, x2: torch.Tensor, chunk: int) -> torch.Tensor:
        """(T, K) -> (T, N) for rows of a chunk of `chunk` rows: ggml picks its kernel by that
        count (`x2` holds several one-row chunks when `chunk` is 1)."""
        tiled = self.tiled_min_rows is not None and chunk >= self.tiled_min_rows and not self.repacked
        if self.c_form is not None:  # the same kernels in C (Q6_K, repacked Q4_K)
            codes, scales, *mins = self.c_form
            args = (self.qtype, codes, scales, mins[0] if mins else None, self.d, self.dmin if mins else None)
            if self.qtype == "Q6_K":  # tiled for a chunk of 8+ rows, else vec_dot row by row
                return native.kquant_mm(*args, x2, multi_row=tiled)
            t4 = 0 if chunk == 1 else x2.shape[0] - x2.shape[0] % 4  # gemm for groups of 4, gemv for the rest
            parts = [native.kquant_mm(*args, x2[:t4], multi_row=True)] if t4 else []
            if t4 < x2.shape[0]:
                parts.append(native.kquant_mm(*args, x2[t4:]))
            return torch.cat(parts) if len(parts) > 1 else parts[0]
        if tiled:
            return self._tiled(*q8_k_codes(x2))
        if self.qtype == "Q6_K":
            return self._q6_k(*q8_k_codes(x2))
        if not self.repacked:
            return self._q4_k_vec_dot(*q8_k_codes(x2))
        t4 = 0 if chunk == 1 else x2.shape[0] - x2.shape[0] % 4
        parts = []
        if t4:  # ggml_gemm_q4_K_8x8_q8_K on ggml_quantize_mat_q8_K_4x8 activations
            parts.append(self._q4_k_repacked(*q8_k_codes(x2[:t4], mat4=True), gemm=True))
        if t4 < x2.shape[0]:  # ggml_gemv_q4_K_8x8_q8_K on quantize_row_q8_K activations
            parts.append(self._q4_k_repacked(*q8_k_codes(x2[t4:]), gemm=False))
        return torch.cat(parts) if len(parts) > 1 else parts[0]

    def _tiled(self, q: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
        t, nb, _ = q.shape
        n = self.out_features
        if self.qtype == "Q6_K":
            s1 = torch.bmm(q.view(t, nb * 8, 32).transpose(0, 1), self.wt)  # (nb*8, T, N), exact
            s1 = s1.double().view(nb, 8, t, n).sum(1).float()  # exact int32, then cvtepi32_ps
            s2 = None
        else:  # Q4_K (not repacked): the vec_dot lane groups, summed over the block
            xq = q.view(t, nb, 8, 8, 4).permute(1, 3, 0, 2, 4).reshape(nb * 8, t, 32)
            s1 = torch.bmm(xq, self.wq).double().view(nb, 8, t, n).sum(1).float()
            s2 = torch.einsum("tbj,nbj->btn", q.view(t, nb, 8, 32).sum(-1), self.mins)  # exact
        acc = torch.zeros(t, n)
        for b in range(nb):
            res = self.d[:, b][None, :] * s1[b]  # d0 * (float) s1
            if s2 is not None:  # fnmadd(dmin0, s2, res)
                res = _fma(res, -self.dmin[:, b][None, :], s2[b])
            acc = _fma(acc, res, dy[:, b][:, None])  # fmadd(res, d1, buf)
        return acc

    def _q6_k(self, q: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
        t, nb, _ = q.shape
        n = self.out_features
        xq = q.view(t, nb, 2, 4, 8, 4).permute(1, 4, 2, 0, 3, 5).reshape(nb, 16, t, 16)  # (b, lane*half, T, 16)
        bsum = q.view(t, nb, 8, 2, 16).sum(-1)  # (T, nb, lane, 2): 16-value sums 2l, 2l+1
        sc = self.scales.view(n, nb, 8, 2)
        acc = torch.zeros(t, n, 8)
        for b in range(nb):
            part = torch.bmm(xq[b], self.wq[16 * b : 16 * (b + 1)]).double().view(8, 2, t, n).sum(1)  # (lane, T, N)
            off = torch.einsum("tlk,nlk->ltn", bsum[:, b].double(), sc[:, b].double())
            lanes = (part - 32.0 * off).float().permute(1, 2, 0)  # cvtepi32_ps, (T, N, lane)
            dd = (dy[:, b][:, None] * self.d[:, b][None, :])[..., None]  # y.d * fp16(x.d), float32
            acc = _fma(acc, dd, lanes)
        return hsum8(acc)

    def _q4_k_vec_dot(self, q: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
        t, nb, _ = q.shape
        n = self.out_features
        xq = q.view(t, nb, 8, 8, 4).permute(1, 3, 0, 2, 4).reshape(nb, 8, t, 32)  # (b, lane, T, 32)
        s32 = q.view(t, nb, 8, 32).sum(-1)  # (T, nb, 8)
        acc = torch.zeros(t, n, 8)
        acc_m = torch.zeros(t, n, 4)
        for b in range(nb):
            lanes = torch.bmm(xq[b], self.wq[8 * b : 8 * (b + 1)]).permute(1, 2, 0)  # (T, N, 8), exact
            dd = (dy[:, b][:, None] * self.d[:, b][None, :])[..., None]
            acc = _fma(acc, dd, lanes)
            prod = torch.einsum("tik,nik->tni", s32[:, b].view(t, 4, 2), self.mins[:, b].view(n, 4, 2))  # exact
            dm = (-(dy[:, b][:, None] * self.dmin[:, b][None, :]))[..., None]
            acc_m = _fma(acc_m, dm, prod)
        m = (acc_m[..., 0] + acc_m[..., 2]) + (acc_m[..., 1] + acc_m[..., 3])
        return hsum8(acc) + m

    def _q4_k_repacked(self, q: torch.Tensor, dy: torch.Tensor, gemm: bool) -> torch.Tensor:
        """gemv: one FMA per super-block (for `d` and for `dmin`); gemm: one per 64 values."""
        t, nb, _ = q.shape
        n = self.out_features
        xq = q.view(t, nb * 4, 64).transpose(0, 1)  # (nb*4, T, 64)
        ints = torch.bmm(xq, self.wq)  # (nb*4, T, N), exact (< 2^24)
        imin = torch.einsum("tbsj,nbsj->bstn", q.view(t, nb, 4, 2, 32).sum(-1), self.mins.view(n, nb, 4, 2))
        if not gemm:  # exact int32 sums over the super-block
            ints = ints.double().view(nb, 4, t, n).sum(1).float()[:, None]  # (nb, 1, T, N)
            imin = imin.double().sum(1).float()[:, None]
        else:
            ints = ints.view(nb, 4, t, n)
        acc = torch.zeros(t, n)
        acc_min = torch.zeros(t, n)
        for b in range(nb):
            dd = self.d[:, b][None, :] * dy[:, b][:, None]  # fp16(d) * y.d, float32
            ddm = self.dmin[:, b][None, :] * dy[:, b][:, None]
            for s in range(ints.shape[1]):
                acc = _fma(acc, ints[b, s], dd)
                acc_min = _fma(acc_min, imin[b, s], ddm)
        return acc - acc_min

    def extra_repr(self) -> str:
        extra = ", repacked" if self.repacked else ""
        return f"in_features={self.in_features}, out_features={self.out_features}, qtype={self.qtype}{extra}"
