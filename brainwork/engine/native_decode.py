"""Decode attention through the C kernel (`native/paged_decode.c`).

It needs no gather buffer, which in the torch path grows with batch x longest context (hundreds
of MB per layer at long contexts), and it is several times faster than gather + SDPA (measured
numbers in the C file's header).
"""

from __future__ import annotations

import ctypes

import torch

from brainwork.engine import native

_P, _I = ctypes.c_void_p, ctypes.c_int64


class NativeDecode:
    """One query token per sequence, keys and values read in place from the block tables."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        fn = lib.paged_decode
        fn.argtypes = [_P, _P, _P, _P, _P, _P, _P, _I, _I, _I, _I, _I, _I, ctypes.c_float, _I, _I]
        fn.restype = ctypes.c_int
        self._fn = fn

    @classmethod
    def create(cls, dtype: torch.dtype, head_dim: int) -> NativeDecode | None:
        """The kernel handles float32 and bfloat16 caches (read as float32) with head_dim a multiple
        of 8 up to 256; None otherwise."""
        if dtype not in (torch.float32, torch.bfloat16) or head_dim % 8 or head_dim > 256:
            return None
        lib = native.load("paged_decode")
        return None if lib is None else cls(lib)

    def __call__(
        self,
        q: torch.Tensor,  # (N, Hq, D) float32, contiguous
        out: torch.Tensor,  # (N, Hq, D) float32, contiguous: rows `rows` are written
        k_cache: torch.Tensor,  # (num_blocks, bs, Hkv, D) float32 or bfloat16
        v_cache: torch.Tensor,
        rows: torch.Tensor,  # (B,) int64: query row of each sequence
        lens: torch.Tensor,  # (B,) int64: context length including this token
        tables: torch.Tensor,  # (B, nb) int64 block tables, padded
        scale: float,
        window: int | None,
    ) -> None:
        _, bs, hkv, d = k_cache.shape
        rc = self._fn(
            q.data_ptr(),
            out.data_ptr(),
            k_cache.data_ptr(),
            v_cache.data_ptr(),
            rows.data_ptr(),
            lens.data_ptr(),
            tables.data_ptr(),
            tables.shape[1],
            rows.shape[0],
            q.shape[1],
            hkv,
            d,
            bs,
            scale,
            window or 0,
            int(k_cache.dtype == torch.bfloat16),
        )
        if rc != 0:
            raise ValueError(f"decode attention kernel: {q.shape[1] // hkv} query heads per kv head, at most 32")
