"""torch's packed weight forms for `aten._weight_int4pack_mm_for_cpu` and `aten._weight_int8pack_mm`.

int4 (group size 32): `packed (N, K/2) uint8` and `scales_zeros (K/32, N, 2)` with
`w[n, k] = (q[n, k] - 8) * scale[k/32, n] + zero[k/32, n]` (checked against the kernel in
tests/test_quant.py). The CPU layout, as `_convert_weight_to_int4pack_for_cpu` writes it: output
rows in tiles of T (torch's vector width x 4: 32 with AVX2, 64 with AVX-512, chosen by the CPU
torch runs on); within a tile, for each k, T/2 bytes whose low nibble is row j and high nibble row
j + T/2. We pack and unpack it here directly on uint8, in row slices, because the op wants an int32
`(N, K)` copy first (545 MB for Qwen's 152k x 896 output matrix). T is read off the op itself once
(`int4_tile`), so a machine with other vectors gets the layout its kernel reads.

int8: `weight (N, K) int8` and per-row `scales (N,)`, `w = q * scale` (symmetric).
"""

from __future__ import annotations

import functools

import torch

GROUP = 32  # int4 group size: GGUF's block size
_SLICE_ROWS = 4096  # rows converted at a time, so temporaries stay small next to big matrices


@functools.cache
def int4_tile() -> int:
    """Output rows per tile of torch's packed int4 form on this CPU: the candidate whose layout
    `_convert_weight_to_int4pack_for_cpu` reproduces on a probe of 64 rows."""
    codes = (torch.arange(64 * GROUP) * 7 % 16).to(torch.uint8).view(64, GROUP)
    ref = torch.ops.aten._convert_weight_to_int4pack_for_cpu(codes.int(), 1)
    for tile in (64, 32, 16):
        if torch.equal(_pack(codes, tile), ref):
            return tile
    raise RuntimeError("torch's int4 CPU packing has a layout this version of brainwork does not know")


def _pack(codes: torch.Tensor, tile: int) -> torch.Tensor:
    n, k = codes.shape
    t = codes.view(n // tile, 2, tile // 2, k)  # (tiles, lo/hi half, T/2, K)
    packed = t[:, 0] | (t[:, 1] << 4)  # (tiles, T/2, K)
    return packed.transpose(1, 2).contiguous().view(n, k // 2)  # (tiles, K, T/2) -> (N, K/2)


def pack_int4(codes: torch.Tensor) -> torch.Tensor:
    """codes `(N, K)` uint8 in 0..15 (N a multiple of `int4_tile()`, K of 32) -> packed `(N, K/2)`."""
    return _pack(codes, int4_tile())


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    """packed `(N, K/2)` -> codes `(N, K)` uint8 (the inverse of `pack_int4`)."""
    n, half = packed.shape
    tile = int4_tile()
    t = packed.view(n // tile, 2 * half, tile // 2).transpose(1, 2)  # (tiles, T/2, K)
    return torch.stack([t & 0x0F, t >> 4], dim=1).reshape(n, 2 * half)


def scales_zeros(scale: torch.Tensor, zero: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Per-row groups `(N, K/32)` each -> the kernel's `(K/32, N, 2)` in `dtype`."""
    return torch.stack([scale, zero], dim=-1).transpose(0, 1).contiguous().to(dtype)


def dequantize_int4(
    packed: torch.Tensor, sz: torch.Tensor, dtype: torch.dtype, out: torch.Tensor | None = None
) -> torch.Tensor:
    """packed `(N, K/2)`, scales_zeros `(K/32, N, 2)` -> float `(N, K)`, written into `out` if given
    (a reused buffer: fresh multi-MB tensors cost page faults that measured slower than the math)."""
    n = packed.shape[0]
    codes = unpack_int4(packed).view(n, -1, GROUP)  # (N, K/32, 32) uint8
    w = torch.empty(codes.shape, dtype=dtype) if out is None else out.view(codes.shape)
    w.copy_(codes)
    s = sz[..., 0].t().unsqueeze(-1).to(dtype)  # (N, K/32, 1)
    z = sz[..., 1].t().unsqueeze(-1).to(dtype) - 8 * s  # folds the -8 in
    return w.mul_(s).add_(z).view(n, -1)


def int4_from_float(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Float `(N, K)` -> codes `(N, K)` uint8, scale, zero `(N, K/32)`: asymmetric min/max per group."""
    n, k = w.shape
    codes = torch.empty(n, k, dtype=torch.uint8)
    scale = torch.empty(n, k // GROUP)
    zero = torch.empty(n, k // GROUP)
    for start in range(0, n, _SLICE_ROWS):
        g = w[start : start + _SLICE_ROWS].float().view(-1, k // GROUP, GROUP)
        lo, hi = g.amin(-1), g.amax(-1)  # (rows, K/32)
        s = ((hi - lo) / 15).clamp_min(1e-12)
        q = ((g - lo.unsqueeze(-1)) / s.unsqueeze(-1)).round_().clamp_(0, 15)
        codes[start : start + _SLICE_ROWS] = q.to(torch.uint8).view(-1, k)
        scale[start : start + _SLICE_ROWS] = s
        zero[start : start + _SLICE_ROWS] = lo + 8 * s  # (q - 8) * s + zero = q * s + lo
    return codes, scale, zero


def int8_from_float(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Float `(N, K)` -> int8 `(N, K)` and per-row scales `(N,)` float32, symmetric (max |w| -> 127)."""
    n, k = w.shape
    q = torch.empty(n, k, dtype=torch.int8)
    scales = torch.empty(n)
    for start in range(0, n, _SLICE_ROWS):
        rows = w[start : start + _SLICE_ROWS].float()
        s = (rows.abs().amax(-1) / 127).clamp_min(1e-12)  # (rows,)
        q[start : start + _SLICE_ROWS] = (rows / s[:, None]).round_().clamp_(-127, 127).to(torch.int8)
        scales[start : start + _SLICE_ROWS] = s
    return q, scales
