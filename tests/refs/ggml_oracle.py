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
