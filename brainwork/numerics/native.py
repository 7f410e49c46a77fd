"""ggml's arithmetic in C (`engine/native/ggml_cpu.c`): the block matmuls and the flash attention
of `numerics`, bit for bit the same results, at C speed.

The torch forms stay as the reference and the fallback (no compiler, `BRAINWORK_NATIVE=0`):
the C kernels are checked against them and against ggml itself in `tests/test_ggml_native.py`.
"""

from __future__ import annotations

import ctypes
from functools import cache

import torch

from brainwork.engine import native

QTYPES = {"Q4_0": 0, "Q4_1": 1, "Q5_0": 2, "Q8_0": 3}
_P, _I = ctypes.c_void_p, ctypes.c_int64


@cache
def _lib() -> ctypes.CDLL | None:
    lib = native.load("ggml_cpu")
    if lib is None:
        return None
    lib.ggml_block_mm.argtypes = [ctypes.c_int, _P, _I, _I, _P, _I, _P]
    lib.ggml_block_mm.restype = ctypes.c_int
    lib.ggml_attn.argtypes = [_P] * 7 + [_I] * 6 + [ctypes.c_float, _I, _P]
    lib.ggml_attn.restype = ctypes.c_int
    lib.ggml_rms_norm.argtypes = [_P, _P, _P, _I, _I, ctypes.c_float]
    lib.ggml_silu.argtypes = [_P, _P, _I, _I]
    lib.ggml_rope.argtypes = [_P, _P, _P, _I, _I, _I]
    lib.ggml_kquant_mm_mode.argtypes = [ctypes.c_int] + [_P] * 5 + [_I, _I, _P, _I, _P, ctypes.c_int]
    lib.ggml_kquant_mm_mode.restype = ctypes.c_int
    for fn in (lib.ggml_rms_norm, lib.ggml_silu, lib.ggml_rope):
        fn.restype = None
    return lib


def available() -> bool:
    return _lib() is not None


def block_mm(qtype: str, raw: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """`raw` (N, K/32 * block bytes) uint8 GGUF blocks, `x` (M, K) float32 -> (M, N) float32."""
    lib = _lib()
    assert lib is not None
    x = x.contiguous()
    m, k = x.shape
    y = torch.empty(m, raw.shape[0], dtype=torch.float32)
    if lib.ggml_block_mm(QTYPES[qtype], raw.data_ptr(), raw.shape[0], k, x.data_ptr(), m, y.data_ptr()):
        raise ValueError(f"ggml_block_mm: bad arguments ({qtype}, K={k})")
    return y


def kquant_mm(
    qtype: str,
    codes: torch.Tensor,  # (N, K) uint8 in value order
    scales: torch.Tensor,  # (N, K/256, 16) int8 (Q6_K) or (N, K/256, 8) uint8 (Q4_K)
    mins: torch.Tensor | None,  # (N, K/256, 8) uint8 (Q4_K)
    d: torch.Tensor,  # (N, K/256) float32
    dmin: torch.Tensor | None,  # (N, K/256) float32 (Q4_K)
    x: torch.Tensor,  # (M, K) float32
    multi_row: bool = False,
) -> torch.Tensor:  # (M, N) float32
    """A Q6_K or repacked-Q4_K matmul as `GGMLKQuantLinear` states it: every activation row alone
    (ggml_vec_dot_q6_K_q8_K, ggml_gemv_q4_K_8x8_q8_K), or with `multi_row` ggml's kernel for a
    chunk of rows (Q6_K's tiled matmul; Q4_K's gemm, M a multiple of 4)."""
    lib = _lib()
    assert lib is not None
    x = x.float().contiguous()
    m, k = x.shape
    n = codes.shape[0]
    y = torch.empty(m, n, dtype=torch.float32)
    rc = lib.ggml_kquant_mm_mode(
        6 if qtype == "Q6_K" else 4, codes.data_ptr(), scales.data_ptr(),
        None if mins is None else mins.data_ptr(), d.data_ptr(), None if dmin is None else dmin.data_ptr(),
        n, k, x.data_ptr(), m, y.data_ptr(), int(multi_row),
    )  # fmt: skip
    if rc == -2:
        raise MemoryError(f"ggml_kquant_mm_mode: no memory for {m} rows")
    if rc:
        raise ValueError(f"ggml_kquant_mm_mode: bad arguments ({qtype}, K={k})")
    return y


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """`ops.rms_norm` in C: x (..., H) float32, weight (H,) float32."""
    lib = _lib()
    assert lib is not None
    x = x.float().contiguous()
    y = torch.empty_like(x)
    n = x.shape[-1]
    lib.ggml_rms_norm(x.data_ptr(), weight.data_ptr(), y.data_ptr(), x.numel() // n, n, eps)
    return y


def silu(x: torch.Tensor) -> torch.Tensor:
    """`ops.silu` in C (ggml_v_silu)."""
    lib = _lib()
    assert lib is not None
    x = x.float().contiguous()
    y = torch.empty_like(x)
    n = x.shape[-1]
    lib.ggml_silu(x.data_ptr(), y.data_ptr(), x.numel() // n, n)
    return y


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """`ops.apply_rope` in C: x (N, H, D), cos/sin (N, D/2) float32."""
    lib = _lib()
    assert lib is not None
    y = x.float().contiguous().clone()
    cos, sin = cos.contiguous(), sin.contiguous()
    lib.ggml_rope(y.data_ptr(), cos.data_ptr(), sin.data_ptr(), y.shape[0], y.shape[1], y.shape[2])
    return y


def attention(
    q: torch.Tensor,  # (N, Hq, D) float32
    k_cache: torch.Tensor,  # (blocks, bs, Hkv, D) float16
    v_cache: torch.Tensor,
    row_seq: torch.Tensor,  # (N,) int64: each row's index into `tables`
    row_pos: torch.Tensor,  # (N,) int64: each row's position
    tables: torch.Tensor,  # (S, nb) int64 block tables
    scale: float,
    window: int | None,
    order: torch.Tensor | None,  # (D,) int64 q.k summation order, or None
) -> torch.Tensor:  # (N, Hq, D) float32
    lib = _lib()
    assert lib is not None
    q = q.float().contiguous()
    out = torch.empty_like(q)
    n, hq, d = q.shape
    _, bs, hkv, _ = k_cache.shape
    tables = tables.contiguous()
    rc = lib.ggml_attn(
        q.data_ptr(), out.data_ptr(), k_cache.data_ptr(), v_cache.data_ptr(),
        row_seq.data_ptr(), row_pos.data_ptr(), tables.data_ptr(), tables.shape[1],
        n, hq, hkv, d, bs, scale, window or 0, None if order is None else order.data_ptr(),
    )  # fmt: skip
    if rc:
        raise ValueError(f"ggml_attn: unsupported shape (head_dim {d}, {hq} query / {hkv} KV heads)")
    return out


class NativeBlockLinear(torch.nn.Module):
    """`GGMLBlockLinear`'s matmul in C, reading the GGUF blocks as they are (no unpacked copy)."""

    def __init__(self, raw: torch.Tensor, qtype: str, in_features: int, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.qtype, self.in_features, self.out_features = qtype, in_features, raw.shape[0]
        self.register_buffer("raw", raw.contiguous())  # (N, K/32 * block bytes) uint8
        self.bias = None if bias is None else torch.nn.Parameter(bias.float(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        y = block_mm(self.qtype, self.raw, x.reshape(-1, self.in_features).float())
        if self.bias is not None:
            y = y + self.bias
        return y.view(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, qtype={self.qtype}, native"


def _concat_blocks(parts: list[torch.nn.Module]) -> NativeBlockLinear | None:
    """NativeBlockLinears of one block type, input size and bias presence -> one, rows stacked."""
    if not all(isinstance(p, NativeBlockLinear) for p in parts):
        return None
    if len({(p.qtype, p.in_features, p.bias is None) for p in parts}) != 1:
        return None
    first = parts[0]
    raw = torch.cat([p.raw for p in parts])  # (sum N, K/32 * block bytes)
    bias = None if first.bias is None else torch.cat([p.bias.detach() for p in parts])
    return NativeBlockLinear(raw, first.qtype, first.in_features, bias)


def fuse_projections(model: torch.nn.Module) -> int:
    """q/k/v and gate/up `NativeBlockLinear`s of one block type become one call each (`qkv_proj`,
    `gate_up_proj`): the weight rows stacked, the activations quantized once. Exact: ggml
    quantizes the same input the same way for each of the three matmuls, and every output
    element is its own dot product. Returns how many groups were fused."""
    from brainwork.quant.transform import fuse_projections as fuse  # the shared mechanism

    return fuse(model, _concat_blocks)
