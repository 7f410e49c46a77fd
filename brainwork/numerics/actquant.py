"""The Q8 formats ggml quantizes activations to before a quantized matmul, as fake quantization.

ggml computes `x . w` for a quantized weight row by first quantizing `x` block-wise
(`vec_dot_type`: Q8_0 for Q4_0/Q5_0/Q8_0, Q8_1 for Q4_1/Q5_1, Q8_K for the K-quants), then
taking integer dot products per block times the two scales. The same sum, up to float32 rounding
order, is `dequant(quant(x)) . dequant(w)`: we return the dequantized activations (and, for Q8_1,
the rounding of its stored block sums) and let one float32 matmul do the rest.

Rounding follows ggml's x86 (AVX2) kernels: `_mm256_round_ps` rounds half to even, which is
`torch.round`. Every division is done in double and rounded once to float32, which gives the
correctly rounded float32 quotient (as the C code's): torch's `scalar / tensor` multiplies by a
reciprocal and is off by one ulp a quarter of the time, enough to flip a rounding tie.
"""

from __future__ import annotations

import torch

VEC_DOT_TYPE = {
    "Q4_0": "Q8_0",
    "Q5_0": "Q8_0",
    "Q8_0": "Q8_0",
    "IQ4_NL": "Q8_0",
    "Q4_1": "Q8_1",
    "Q5_1": "Q8_1",
    "Q2_K": "Q8_K",
    "Q3_K": "Q8_K",
    "Q4_K": "Q8_K",
    "Q5_K": "Q8_K",
    "Q6_K": "Q8_K",
}


def q8_codes(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x `(M, K)` float32 -> codes `(M, K/32, 32)` (integers in [-127, 127], as float32) and the
    float32 scale d `(M, K/32)`. ggml (AVX2): d = amax / 127 (stored as fp16),
    codes = round_half_even(x * (127 / amax))."""
    m, k = x.shape
    xb = x.view(m, k // 32, 32)
    amax = xb.abs().amax(-1).double()  # (M, nb)
    d = (amax / 127.0).float()
    inv = torch.where(amax > 0, 127.0 / amax, torch.zeros_like(amax)).float()
    return torch.round(xb * inv[..., None]), d


def quantize_q8_0(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x `(M, K)` float32 -> (dequantized x `(M, K)`, float32 scale d `(M, K/32)`, sum of codes
    `(M, K/32)`); the dequantized values use the fp16-rounded d, as the dot products do."""
    q, d = q8_codes(x)
    d16 = d.half().float()
    return (q * d16[..., None]).view(x.shape), d, q.sum(-1)


def quantize_q8_1(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Q8_0 plus the block sum ggml stores as fp16 `s = d * sum(q)` and multiplies by the weight
    block's offset `m`. Returns (dequantized x, s_error `(M, K/32)`): what `s` adds beyond the
    exact `d16 * sum(q)` that the float matmul against an offset already counts."""
    xq, d, qsum = quantize_q8_0(x)
    s16 = (d * qsum).half().float()
    return xq, s16 - d.half().float() * qsum


def quantize_q8_k(x: torch.Tensor) -> torch.Tensor:
    """x `(M, K)` -> dequantized Q8_K `(M, K)`: blocks of 256, `iscale = -127 / max` where max is
    the value of largest magnitude, codes `min(127, round(iscale * x))`, scale `1 / iscale` (fp32)."""
    m, k = x.shape
    xb = x.view(m, k // 256, 256)
    idx = xb.abs().argmax(-1, keepdim=True)  # first largest, as ggml's strict `>` scan
    mx = xb.gather(-1, idx)  # (M, nb, 1) signed
    mx64 = mx.double()
    iscale = torch.where(mx64 != 0, -127.0 / mx64, torch.zeros_like(mx64)).float()
    q = torch.round(iscale * xb).clamp_(max=127)
    d = torch.where(mx64 != 0, 1.0 / iscale.double(), torch.zeros_like(mx64)).float()
    return (q * d).view(m, k)
