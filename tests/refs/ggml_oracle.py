"""ggml itself, op by op, as the reference for `brainwork.numerics`.

The `xllamacpp` wheel exports the whole ggml C API from one shared library. Through ctypes we
call its quantizers and dot products directly and run one-op ggml graphs (RMS norm, RoPE, GLUs,
flash attention) on the CPU backend, so each emulated op can be compared bit for bit.
"""

from __future__ import annotations

import ctypes
from functools import cache
from pathlib import Path

import numpy as np

F32, F16, I32 = 0, 1, 26  # ggml_type values
GGML_TYPE = {"Q4_0": 2, "Q4_1": 3, "Q5_0": 6, "Q8_0": 8, "Q4_K": 12, "Q6_K": 14}
_P = ctypes.c_void_p


class _InitParams(ctypes.Structure):
    _fields_ = [("mem_size", ctypes.c_size_t), ("mem_buffer", ctypes.c_void_p), ("no_alloc", ctypes.c_bool)]


_SIGNATURES = [
    ("ggml_init", _P, [_InitParams]),
    ("ggml_free", None, [_P]),
    ("ggml_new_tensor_4d", _P, [_P, ctypes.c_int] + [ctypes.c_int64] * 4),
    ("ggml_get_data", _P, [_P]),
    ("ggml_rms_norm", _P, [_P, _P, ctypes.c_float]),
    ("ggml_mul", _P, [_P, _P, _P]),
    ("ggml_swiglu_split", _P, [_P, _P, _P]),
    ("ggml_geglu_split", _P, [_P, _P, _P]),
    ("ggml_rope_ext", _P, [_P, _P, _P, _P, ctypes.c_int, ctypes.c_int, ctypes.c_int] + [ctypes.c_float] * 6),
    ("ggml_flash_attn_ext", _P, [_P, _P, _P, _P, _P, ctypes.c_float, ctypes.c_float, ctypes.c_float]),
    ("ggml_mul_mat", _P, [_P, _P, _P]),
    ("ggml_quantize_mat_q8_K_4x8", None, [_P, _P, ctypes.c_int64]),
    ("dequantize_row_q8_0", None, [_P, _P, ctypes.c_int64]),
    ("dequantize_row_q5_0", None, [_P, _P, ctypes.c_int64]),
    ("ggml_gemm_q4_K_8x8_q8_K", None, [ctypes.c_int, _P, ctypes.c_size_t, _P, _P, ctypes.c_int, ctypes.c_int]),
    ("ggml_gemv_q4_K_8x8_q8_K", None, [ctypes.c_int, _P, ctypes.c_size_t, _P, _P, ctypes.c_int, ctypes.c_int]),
    ("ggml_new_graph", _P, [_P]),
    ("ggml_build_forward_expand", None, [_P, _P]),
    ("ggml_graph_compute_with_ctx", ctypes.c_int, [_P, _P, ctypes.c_int]),
]


@cache
def lib() -> ctypes.CDLL:
    import xllamacpp

    so = next(Path(xllamacpp.__file__).parent.glob("xllamacpp*.so"))
    handle = ctypes.CDLL(str(so))
    handle.ggml_cpu_init()  # fp16 tables used by the CPU kernels
    for name, res, args in _SIGNATURES:
        fn = getattr(handle, name)
        fn.restype, fn.argtypes = res, args
    return handle


def _quantize(fn: str, x: np.ndarray, block: int, nbytes: int) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    out = np.zeros(x.shape[-1] // block * nbytes, dtype=np.uint8)
    getattr(lib(), fn)(x.ctypes.data_as(_P), out.ctypes.data_as(_P), ctypes.c_int64(x.shape[-1]))
    return out.reshape(-1, nbytes)


def dequantize(raw: np.ndarray, qtype: str) -> np.ndarray:
    """Rows of Q8_0 or Q5_0 blocks (N, bytes) -> (N, values) float32, as ggml's get_rows dequantizes them."""
    raw = np.ascontiguousarray(raw, dtype=np.uint8)
    size = {"Q8_0": 34, "Q5_0": 22}[qtype]
    out = np.zeros((raw.shape[0], raw.shape[1] // size * 32), dtype=np.float32)
    fn = getattr(lib(), f"dequantize_row_{qtype.lower()}")
    fn(raw.ctypes.data_as(_P), out.ctypes.data_as(_P), ctypes.c_int64(out.size))
    return out


def quantize_q8_0(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One row -> codes `(nb, 32)` int, fp16 scales `(nb,)` as float32."""
    b = _quantize("quantize_row_q8_0", x, 32, 34)
    return b[:, 2:].view(np.int8).astype(np.int32), b[:, :2].copy().view(np.float16)[:, 0].astype(np.float32)


def quantize_q8_1_raw(x: np.ndarray) -> np.ndarray:
    return _quantize("quantize_row_q8_1", x, 32, 36).reshape(-1)


def quantize_q8_0_raw(x: np.ndarray) -> np.ndarray:
    return _quantize("quantize_row_q8_0", x, 32, 34).reshape(-1)


def quantize_q8_1(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One row -> codes `(nb, 32)`, fp16 d and s `(nb,)` as float32."""
    b = _quantize("quantize_row_q8_1", x, 32, 36)
    half = b[:, :4].copy().view(np.float16).astype(np.float32)
    return b[:, 4:].view(np.int8).astype(np.int32), half[:, 0], half[:, 1]


def quantize_q8_k(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One row -> codes `(nb, 256)`, float32 d `(nb,)`."""
    b = _quantize("quantize_row_q8_K", x, 256, 292)
    return b[:, 4:260].view(np.int8).astype(np.int32), b[:, :4].copy().view(np.float32)[:, 0]


def vec_dot(fn: str, weight_row: np.ndarray, activation: np.ndarray, k: int) -> float:
    """`ggml_vec_dot_<w>_<x>` of one raw weight row with one quantized activation row."""
    s = np.zeros(1, dtype=np.float32)
    w, a = np.ascontiguousarray(weight_row), np.ascontiguousarray(activation)
    getattr(lib(), fn)(
        ctypes.c_int(k), s.ctypes.data_as(_P), ctypes.c_size_t(0), w.ctypes.data_as(_P), ctypes.c_size_t(0),
        a.ctypes.data_as(_P), ctypes.c_size_t(0), ctypes.c_int(1),
    )  # fmt: skip
    return float(s[0])


class _Graph:
    def __init__(self) -> None:
        self.ctx = lib().ggml_init(_InitParams(256 * 2**20, None, False))

    def tensor(self, a: np.ndarray, gtype: int = F32) -> int:
        """numpy array, row-major `(..., ne0)` -> ggml tensor (ne reversed)."""
        a = np.ascontiguousarray(a)
        ne = list(a.shape[::-1]) + [1] * (4 - a.ndim)
        t = lib().ggml_new_tensor_4d(self.ctx, gtype, *ne)
        ctypes.memmove(lib().ggml_get_data(t), a.ctypes.data, a.nbytes)
        return t

    def compute(self, out: int, shape: tuple[int, ...], threads: int = 2) -> np.ndarray:
        graph = lib().ggml_new_graph(self.ctx)
        lib().ggml_build_forward_expand(graph, out)
        lib().ggml_graph_compute_with_ctx(self.ctx, graph, threads)
        res = np.empty(shape, dtype=np.float32)
        ctypes.memmove(res.ctypes.data, lib().ggml_get_data(out), res.nbytes)
        lib().ggml_free(self.ctx)
        return res


def rms_norm_mul(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    g = _Graph()
    return g.compute(lib().ggml_mul(g.ctx, lib().ggml_rms_norm(g.ctx, g.tensor(x), eps), g.tensor(w)), x.shape)


def glu(kind: str, gate: np.ndarray, up: np.ndarray) -> np.ndarray:
    g = _Graph()
    fn = lib().ggml_swiglu_split if kind == "swiglu" else lib().ggml_geglu_split
    return g.compute(fn(g.ctx, g.tensor(gate), g.tensor(up)), gate.shape)


def rope(x: np.ndarray, positions: np.ndarray, neox: bool, base: float) -> np.ndarray:
    """x `(T, H, D)` -> ggml_rope_ext (mode NORM: adjacent pairs, NEOX: halves)."""
    g = _Graph()
    out = lib().ggml_rope_ext(
        g.ctx, g.tensor(x.astype(np.float32)), g.tensor(positions.astype(np.int32), I32), None,
        x.shape[-1], 2 if neox else 0, 0, base, 1.0, 0.0, 1.0, 32.0, 1.0,
    )  # fmt: skip
    return g.compute(out, x.shape)


def flash_attention(q: np.ndarray, k16: np.ndarray, v16: np.ndarray, scale: float) -> np.ndarray:
    """q `(T, Hq, D)` float32 for the last T of L positions (causal), k16/v16 `(L, Hkv, D)`."""
    t, hq, d = q.shape
    length, hkv, _ = k16.shape
    padded = max(256, -(-length // 256) * 256)  # llama.cpp pads the KV view to 256 cells
    k = np.zeros((hkv, padded, d), np.float16)
    v = np.zeros((hkv, padded, d), np.float16)
    k[:, :length], v[:, :length] = k16.transpose(1, 0, 2), v16.transpose(1, 0, 2)
    mask = np.full((-(-t // 64) * 64, padded), -np.inf, np.float16)
    for i in range(t):
        mask[i, : length - t + i + 1] = 0
    g = _Graph()
    out = lib().ggml_flash_attn_ext(
        g.ctx, g.tensor(np.ascontiguousarray(q.transpose(1, 0, 2))), g.tensor(k, F16), g.tensor(v, F16),
        g.tensor(mask, F16), scale, 0.0, 0.0,
    )  # fmt: skip
    return g.compute(out, (t, hq, d))


def mul_mat(raw: np.ndarray, qtype: str, x: np.ndarray) -> np.ndarray:
    """`ggml_mul_mat` of a quantized weight (raw rows `(N, bytes)`, K inputs) with activations
    `x` (M, K) -> (M, N), on the CPU backend as llama.cpp runs it when the weight is not
    repacked: ggml picks vec_dot or its tiled kernel by M."""
    m, k = x.shape
    g = _Graph()
    w = lib().ggml_new_tensor_4d(g.ctx, GGML_TYPE[qtype], k, raw.shape[0], 1, 1)
    raw = np.ascontiguousarray(raw)
    ctypes.memmove(lib().ggml_get_data(w), raw.ctypes.data, raw.nbytes)
    return g.compute(lib().ggml_mul_mat(g.ctx, w, g.tensor(x.astype(np.float32))), (m, raw.shape[0]))


def _repack_q4_k_8x8(raw: np.ndarray) -> np.ndarray:
    """Q4_K rows `(N, nb * 144)`, N % 8 == 0 -> llama.cpp's `block_q4_Kx8` bytes `(N/8, nb, 1152)`:
    8 rows' d, dmin, 6-bit scales/mins re-packed, and their codes interleaved 8 bytes at a time."""
    n, nbytes = raw.shape
    nb = nbytes // 144
    b = np.ascontiguousarray(raw).reshape(n // 8, 8, nb, 144)
    out = np.zeros((n // 8, nb, 1152), np.uint8)
    out[..., 0:16] = b[..., 0:2].transpose(0, 2, 1, 3).reshape(n // 8, nb, 16)  # 8 x d (fp16)
    out[..., 16:32] = b[..., 2:4].transpose(0, 2, 1, 3).reshape(n // 8, nb, 16)  # 8 x dmin
    out[..., 128:] = b[..., 16:].reshape(n // 8, 8, nb, 16, 8).transpose(0, 2, 3, 1, 4).reshape(n // 8, nb, 1024)
    sc = b[..., 4:16].astype(np.int32).transpose(0, 2, 1, 3)  # (N/8, nb, row, 12)
    o = np.zeros((n // 8, nb, 96), np.int32)
    for i in range(4):
        hi_s = ((sc[..., i] & 192) >> 2) | (sc[..., i + 8] & 15)
        hi_m = ((sc[..., i + 4] & 192) >> 2) | ((sc[..., i + 8] & 240) >> 4)
        halves = [(sc[..., i] & 63, sc[..., i + 4] & 63), (hi_s, hi_m)]
        for half, (s, m) in enumerate(halves):
            base = i * 12 + 48 * half
            for c in range(4):
                o[..., base + c] = (s[..., c] & 63) + ((s[..., c + 4] & 48) << 2)
                o[..., base + 4 + c] = (m[..., c] & 63) + ((m[..., c + 4] & 48) << 2)
                o[..., base + 8 + c] = (s[..., c + 4] & 15) + ((m[..., c + 4] & 15) << 4)
    out[..., 32:128] = (o & 255).astype(np.uint8)
    return out


def q4_k_repacked_mm(raw: np.ndarray, x: np.ndarray) -> np.ndarray:
    """llama.cpp's CPU_REPACK Q4_K matmul (what it runs when N % 8 == 0): rows of `x` (M, K) in
    full groups of 4 through `ggml_quantize_mat_q8_K_4x8` + `ggml_gemm_q4_K_8x8_q8_K`, the rest
    through `quantize_row_q8_K` + `ggml_gemv_q4_K_8x8_q8_K`. -> (M, N)."""
    x = np.ascontiguousarray(x, np.float32)
    m, k = x.shape
    n, nb = raw.shape[0], k // 256
    packed = np.ascontiguousarray(_repack_q4_k_8x8(raw))
    res = np.zeros((m, n), np.float32)
    m4 = m - m % 4
    if m4:
        per = nb * (16 + 1024 + 128)  # block_q8_Kx4: 4 d, interleaved codes, 4 x 16 bsums
        qa = np.zeros(m4 // 4 * per, np.uint8)
        for grp in range(m4 // 4):
            lib().ggml_quantize_mat_q8_K_4x8(x[4 * grp :].ctypes.data, qa[grp * per :].ctypes.data, k)
        out = np.zeros((m4, n), np.float32)
        lib().ggml_gemm_q4_K_8x8_q8_K(k, out.ctypes.data, n, packed.ctypes.data, qa.ctypes.data, m4, n)
        res[:m4] = out
    for r in range(m4, m):
        qx = np.ascontiguousarray(_quantize("quantize_row_q8_K", x[r], 256, 292).reshape(-1))  # block_q8_K
        out = np.zeros(n, np.float32)
        lib().ggml_gemv_q4_K_8x8_q8_K(k, out.ctypes.data, n, packed.ctypes.data, qx.ctypes.data, 1, n)
        res[r] = out
    return res
