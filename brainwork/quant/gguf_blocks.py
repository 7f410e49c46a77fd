"""GGUF block formats decoded into group-32 affine int4 (`w = (q - 8) * scale + zero`) without loss.

Q4_0, Q4_1 and Q4_K store 4-bit codes over groups of 32 with one scale (and an offset) per group,
so they map onto torch's group-wise int4 exactly:

    Q4_0  w = d * (q - 8)              -> scale d,       zero 0
    Q4_1  w = d * q + m                -> scale d,       zero m + 8 d
    Q4_K  w = d*sc_j * q - dmin*m_j    -> scale d*sc_j,  zero 8 d*sc_j - dmin*m_j  (8 groups of 32 per 256)

Inputs are a tensor's raw bytes as `(rows, bytes per row)` uint8; outputs are codes `(rows, K)`
uint8 in 0..15 and scale/zero `(rows, K / 32)` float32.
"""

from __future__ import annotations

import numpy as np

INT4_TYPES = frozenset(["Q4_0", "Q4_1", "Q4_K"])
_BLOCK_BYTES = {"Q4_0": 18, "Q4_1": 20, "Q4_K": 144}


def int4_groups(raw: np.ndarray, qtype: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw rows `(R, bytes)` of a Q4_0/Q4_1/Q4_K tensor -> codes `(R, K)`, scale, zero `(R, K/32)`."""
    if qtype not in INT4_TYPES:
        raise ValueError(f"{qtype} is not a 4-bit group-32 GGUF type ({', '.join(sorted(INT4_TYPES))})")
    rows = raw.shape[0]
    blocks = np.ascontiguousarray(raw).reshape(rows, -1, _BLOCK_BYTES[qtype])  # (R, nb, block bytes)
    if qtype in ("Q4_0", "Q4_1"):
        d = blocks[..., 0:2].copy().view(np.float16).astype(np.float32)[..., 0]  # (R, nb)
        head = 2 if qtype == "Q4_0" else 4
        qs = blocks[..., head:]  # (R, nb, 16): value j in the low nibble, j + 16 in the high one
        codes = np.concatenate([qs & 0x0F, qs >> 4], axis=-1).reshape(rows, -1)
        if qtype == "Q4_0":
            return codes, d, np.zeros_like(d)
        m = blocks[..., 2:4].copy().view(np.float16).astype(np.float32)[..., 0]
        return codes, d, m + 8.0 * d
    # Q4_K: d, dmin (f16), 12 bytes of 6-bit scales/mins for 8 sub-blocks, 128 bytes of codes
    d = blocks[..., 0:2].copy().view(np.float16).astype(np.float32)  # (R, nb, 1)
    dmin = blocks[..., 2:4].copy().view(np.float16).astype(np.float32)
    s = blocks[..., 4:16].reshape(rows, -1, 3, 4)
    a, b, c = s[..., 0, :], s[..., 1, :], s[..., 2, :]
    sc = np.concatenate([a & 0x3F, (c & 0x0F) | ((a >> 2) & 0x30)], axis=-1).astype(np.float32)  # (R, nb, 8)
    mn = np.concatenate([b & 0x3F, (c >> 4) | ((b >> 2) & 0x30)], axis=-1).astype(np.float32)
    qs = blocks[..., 16:].reshape(rows, -1, 4, 1, 32)  # 4 pairs of sub-blocks: low nibbles, then high
    codes = np.concatenate([qs & 0x0F, qs >> 4], axis=-2).reshape(rows, -1)
    scale = (d * sc).reshape(rows, -1)
    zero = (8.0 * d * sc - dmin * mn).reshape(rows, -1)
    return codes, scale, zero
