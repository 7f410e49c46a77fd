"""Integer codes and scales of GGUF's 32-value block formats, as ggml's dot products read them.

Returns codes `(R, K)` as the signed integers the AVX2 kernels multiply (Q4_0: q - 8, Q5_0:
q - 16, Q8_0: q, Q4_1: q in 0..15) and per-block `d` (and `m` for Q4_1) `(R, K/32)` float32.
"""

from __future__ import annotations

import numpy as np

BLOCK32 = {"Q4_0": 18, "Q4_1": 20, "Q5_0": 22, "Q8_0": 34}


def _f16(b: np.ndarray) -> np.ndarray:
    return b.copy().view(np.float16).astype(np.float32)[..., 0]


def block32(raw: np.ndarray, qtype: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    rows = raw.shape[0]
    b = np.ascontiguousarray(raw).reshape(rows, -1, BLOCK32[qtype])  # (R, nb, bytes)
    d = _f16(b[..., 0:2])
    if qtype == "Q8_0":
        return b[..., 2:].view(np.int8).astype(np.int16).reshape(rows, -1), d, None
    if qtype == "Q4_1":
        qs = b[..., 4:]
        codes = np.concatenate([qs & 0x0F, qs >> 4], axis=-1).astype(np.int16)
        return codes.reshape(rows, -1), d, _f16(b[..., 2:4])
    if qtype == "Q4_0":
        qs = b[..., 2:]
        codes = np.concatenate([qs & 0x0F, qs >> 4], axis=-1).astype(np.int16) - 8
        return codes.reshape(rows, -1), d, None
    # Q5_0: 4 bytes of high bits, then 16 bytes of nibbles
    qh = b[..., 2:6].copy().view(np.uint32)  # (R, nb, 1)
    qs = b[..., 6:]
    low = np.concatenate([qs & 0x0F, qs >> 4], axis=-1).astype(np.int16)  # (R, nb, 32)
    high = ((qh >> np.arange(32, dtype=np.uint32)) & 1).astype(np.int16) << 4
    return (low | high).reshape(rows, -1) - 16, d, None


# K-quants: super-blocks of 256 values.
BLOCK256 = {"Q4_K": 144, "Q6_K": 210}


def q4_k_blocks(raw: np.ndarray) -> dict[str, np.ndarray]:
    """Q4_K rows `(R, nb*144)` -> `codes` `(R, nb*256)` uint8 in 0..15 (value order), `scales` and
    `mins` `(R, nb, 8)` (6-bit, one per 32 values), `d`, `dmin` `(R, nb)` float32 (from fp16).
    A value is `d * scales[j] * q - dmin * mins[j]`."""
    rows = raw.shape[0]
    b = np.ascontiguousarray(raw).reshape(rows, -1, 144)
    d, dmin = _f16(b[..., 0:2]), _f16(b[..., 2:4])
    q = b[..., 4:16].astype(np.uint8)  # (R, nb, 12), get_scale_min_k4
    sc = np.empty((*q.shape[:-1], 8), np.uint8)
    mn = np.empty_like(sc)
    sc[..., :4] = q[..., 0:4] & 63
    mn[..., :4] = q[..., 4:8] & 63
    sc[..., 4:] = (q[..., 8:12] & 0x0F) | ((q[..., 0:4] >> 6) << 4)
    mn[..., 4:] = (q[..., 8:12] >> 4) | ((q[..., 4:8] >> 6) << 4)
    qs = b[..., 16:].reshape(rows, -1, 4, 32)  # 4 chunks of 64 values: low nibbles then high
    codes = np.stack([qs & 0x0F, qs >> 4], axis=3)  # (R, nb, 4, 2, 32)
    return {"codes": codes.reshape(rows, -1), "scales": sc, "mins": mn, "d": d, "dmin": dmin}


def q6_k_blocks(raw: np.ndarray) -> dict[str, np.ndarray]:
    """Q6_K rows `(R, nb*210)` -> `codes` `(R, nb*256)` uint8 in 0..63 (value order; the value is
    `d * scales[p // 16] * (q - 32)`), `scales` `(R, nb, 16)` int8, `d` `(R, nb)` float32."""
    rows = raw.shape[0]
    b = np.ascontiguousarray(raw).reshape(rows, -1, 210)
    ql = b[..., 0:128].reshape(rows, -1, 2, 2, 32)  # (chunk of 128, half of 64, l)
    qh = b[..., 128:192].reshape(rows, -1, 2, 1, 32)
    low = np.concatenate([ql & 0x0F, ql >> 4], axis=3)  # (R, nb, 2, 4, 32): groups l, l+32, l+64, l+96
    shifts = np.array([0, 2, 4, 6], np.uint8).reshape(1, 1, 1, 4, 1)
    high = ((qh >> shifts) & 3) << 4
    # low's group order is (ql[l] & F, ql[l+32] & F, ql[l] >> 4, ql[l+32] >> 4) = values +0, +32, +64, +96
    codes = (low | high).reshape(rows, -1)
    scales = b[..., 192:208].copy().view(np.int8)
    return {"codes": codes, "scales": scales, "d": _f16(b[..., 208:210])}
