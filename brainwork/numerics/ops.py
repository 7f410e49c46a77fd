"""ggml's CPU element-wise arithmetic where it differs from the textbook float32 formula.

- RMS norm sums squares in double, then `x * (1 / sqrtf(mean + eps))`, then a separate multiply
  by the weight.
- RoPE angles come from a cache built by repeated float32 multiplication,
  `theta_{i+1} = theta_i * base^(-2/D)`, not from `pos * inv_freq[i]`.
- GELU (tanh form) is a lookup table over float16 inputs holding float16 outputs.
"""

from __future__ import annotations

import math
import struct

import torch

from brainwork.numerics import native


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """x `(..., H)` float32; `weight` is the effective multiplier (Gemma: 1 + w, as GGUF stores it)."""
    if native.available():
        return native.rms_norm(x, weight, eps)
    return rms_norm_torch(x, weight, eps)


def rms_norm_torch(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    sq = (x * x).double().sum(-1, keepdim=True)  # float32 squares, summed in double
    mean = (sq / x.shape[-1]).float()
    root = torch.sqrt((mean + eps).double()).float()  # sqrtf, correctly rounded (torch's float32 sqrt is not)
    scale = (1.0 / root.double()).float()  # 1.0f / sqrtf(mean + eps)
    return (x * scale) * weight


class _Libm:
    """glibc's cosf/sinf: ggml builds its RoPE cache with them, and they are not correctly
    rounded (a double-precision cos rounded to float differs in ~1% of angles)."""

    def __init__(self) -> None:
        import ctypes
        import ctypes.util

        path = ctypes.util.find_library("m")
        self.lib = ctypes.CDLL(path) if path else None
        if self.lib is not None:
            for name in ("cosf", "sinf"):
                fn = getattr(self.lib, name)
                fn.restype, fn.argtypes = ctypes.c_float, [ctypes.c_float]

    def cos_sin(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.lib is None:  # no C math library: correctly rounded values (rarely 1 ulp off ggml)
            t = theta.double()
            return t.cos().float(), t.sin().float()
        flat = theta.reshape(-1).tolist()
        cos = torch.tensor([self.lib.cosf(v) for v in flat], dtype=torch.float32).view(theta.shape)
        sin = torch.tensor([self.lib.sinf(v) for v in flat], dtype=torch.float32).view(theta.shape)
        return cos, sin


_LIBM: _Libm | None = None


def libm() -> _Libm:
    global _LIBM
    if _LIBM is None:
        _LIBM = _Libm()
    return _LIBM


# glibc's expf (sysdeps/ieee754/flt-32/e_expf.c, glibc >= 2.27), which ggml's scalar code calls:
# x * 32/ln2 = k + r, 2^(k/32) from a table, a cubic in r, all in double, rounded once to float.
# Vectorized here; checked equal to the C library's expf on 700k inputs.
_EXP_N = 32
_EXP_TAB = torch.tensor(
    [struct.unpack("<q", struct.pack("<d", 2.0 ** (i / _EXP_N)))[0] - (i << 47) for i in range(_EXP_N)],
    dtype=torch.int64,
)
_EXP_SHIFT = float.fromhex("0x1.8p+52")
_EXP_INVLN2N = float.fromhex("0x1.71547652b82fep+0") * _EXP_N
_EXP_C = (
    float.fromhex("0x1.c6af84b912394p-5") / _EXP_N**3,
    float.fromhex("0x1.ebfce50fac4f3p-3") / _EXP_N**2,
    float.fromhex("0x1.62e42ff0c52d6p-1") / _EXP_N,
)


def expf(x: torch.Tensor) -> torch.Tensor:
    """glibc's expf, bit for bit, for float32 `x` (-inf and underflow give 0, overflow inf)."""
    z = _EXP_INVLN2N * x.double()
    kd = z + _EXP_SHIFT  # round to an integer in the low bits
    ki = kd.view(torch.int64)
    r = z - (kd - _EXP_SHIFT)
    s = (_EXP_TAB[ki % _EXP_N] + (ki << (52 - 5))).view(torch.float64)
    y = (_EXP_C[0] * r + _EXP_C[1]) * (r * r) + (_EXP_C[2] * r + 1)
    out = (y * s).float()
    out = torch.where(x < float.fromhex("-0x1.9fe368p6"), torch.zeros_like(out), out)
    return torch.where(x > float.fromhex("0x1.62e42ep6"), torch.full_like(out, float("inf")), out)


_ROPE_CACHE: dict[tuple[int, float, float], tuple[torch.Tensor, torch.Tensor]] = {}


def rope_cos_sin(
    positions: torch.Tensor, head_dim: int, base: float, freq_scale: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin `(N, D/2)` float32 of ggml's rope cache for integer `positions` `(N,)`:
    theta_0 = pos, theta_{i+1} = theta_i * base^(-2/D) in float32, then cosf/sinf."""
    key = (head_dim, base, freq_scale)
    need = int(positions.max()) + 1 if positions.numel() else 0
    cached = _ROPE_CACHE.get(key)
    if cached is None or cached[0].shape[0] < need:
        size = max(need, 2 * (cached[0].shape[0] if cached else 256))
        theta_scale = torch.tensor(math.pow(base, -2.0 / head_dim), dtype=torch.float32)  # powf
        theta = torch.arange(size, dtype=torch.float32)[:, None]  # (P, 1)
        cols = []
        for _ in range(head_dim // 2):
            cols.append(theta * freq_scale if freq_scale != 1.0 else theta)
            theta = theta * theta_scale  # float32, as ggml's loop
        cached = libm().cos_sin(torch.cat(cols, dim=1))  # (P, D/2) each
        _ROPE_CACHE[key] = cached
    return cached[0][positions], cached[1][positions]


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x `(N, H, D)` in rotate-half layout (pairs (i, i + D/2)); cos/sin `(N, D/2)`. As compiled
    in ggml: `x0*cos - x1*sin` -> fma(x0, cos, -(x1*sin)), `x0*sin + x1*cos` -> fma(x0, sin, x1*cos)."""
    if native.available():
        return native.apply_rope(x, cos, sin)
    return apply_rope_torch(x, cos, sin)


def apply_rope_torch(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    x0, x1 = x[..., :half], x[..., half:]
    c, s = cos[:, None, :], sin[:, None, :]
    return torch.cat((_fma(x0, c, -(x1 * s)), _fma(x0, s, x1 * c)), dim=-1)


def _gelu_table() -> torch.Tensor:
    """ggml_table_gelu_f16: for every float16 bit pattern, float16(ggml_gelu_f32(value)), the
    float32 formula step by step (its cancellation in `1 + tanh` for negative inputs included)."""
    bits = torch.arange(65536, dtype=torch.int32).to(torch.int16)
    v = bits.view(torch.float16).float()
    c = torch.tensor(0.79788456080286535587989211986876, dtype=torch.float32)
    a = torch.tensor(0.044715, dtype=torch.float32)
    # float32 as compiled (gcc contracts `1.0f + a*x*x` into fma(a*x, x, 1))
    inner = c * v * ((a * v).double() * v.double() + 1.0).float()
    t = torch.tanh(inner.double()).float()  # tanhf, correctly rounded
    return (0.5 * v * (1.0 + t)).half().float()  # (65536,)


_GELU = None


def gelu_fp16_table(x: torch.Tensor) -> torch.Tensor:
    """ggml_vec_gelu_f32 / geglu with GGML_GELU_FP16: 0 below -10, identity above 10, else table."""
    global _GELU
    if _GELU is None:
        _GELU = _gelu_table()
    idx = x.half().view(torch.int16).to(torch.int64) & 0xFFFF
    y = _GELU[idx]
    y = torch.where(x <= -10.0, torch.zeros_like(x), y)
    return torch.where(x >= 10.0, x, y)


def _fma(a: torch.Tensor, b: torch.Tensor | float, c: torch.Tensor | float) -> torch.Tensor:
    """float32 fma: the product is exact in double, the sum rounds once (to double, then to
    float32; the double rounding could only matter on a float32 tie, ~2^-29 of cases)."""
    a64 = a.double()
    b64 = b.double() if isinstance(b, torch.Tensor) else b
    c64 = c.double() if isinstance(c, torch.Tensor) else c
    return (a64 * b64 + c64).float()


def _f(hexfloat: str) -> float:
    return float.fromhex(hexfloat)


def expf_avx2(x: torch.Tensor) -> torch.Tensor:
    """ggml_v_expf (AVX2 + FMA): Arm's optimized-routines exp, 1.5 ulp, reproduced bit for bit."""
    r = _f("0x1.8p23")
    z = _fma(x, _f("0x1.715476p+0"), r)
    n = z - r
    b = _fma(-n, _f("0x1.7f7d1cp-20"), _fma(-n, _f("0x1.62e4p-1"), x))  # fnmadd: c - a*b
    e = z.view(torch.int32) << 23
    k = (e + torch.tensor(1.0).view(torch.int32)).view(torch.float32)
    u = b * b
    j = _fma(
        _fma(_fma(b, _f("0x1.0e4020p-7"), _f("0x1.573e2ep-5")), u, _fma(b, _f("0x1.555e66p-3"), _f("0x1.fffdb6p-2"))),
        u,
        b * _f("0x1.ffffecp-1"),
    )
    res = _fma(j, k, k)
    c = n.abs() > 126
    if bool(c.any()):  # |n| > 126: scale in two steps (or saturate past 192)
        neg = torch.tensor(0x82000000 - (1 << 32), dtype=torch.int32)  # 0x82000000 as a signed int32
        g = torch.where(n <= 0, neg, torch.tensor(0, dtype=torch.int32))
        s1 = (g + 0x7F000000).view(torch.float32)
        s2 = (e - g).view(torch.float32)
        big = _fma(s2, j, s2) * s1
        res = torch.where(c, big, res)
        res = torch.where(n.abs() > 192, s1 * s1, res)
    return res


def silu(x: torch.Tensor) -> torch.Tensor:
    """ggml_v_silu: x / (1 + expf(-x)) with the AVX2 expf, the division correctly rounded."""
    if native.available():
        return native.silu(x)
    return silu_torch(x)


def silu_torch(x: torch.Tensor) -> torch.Tensor:
    den = 1.0 + expf_avx2(-x)
    return (x.double() / den.double()).float()
