"""Decode attention through the C kernel (`native/paged_decode.c`), rows split over threads."""

from __future__ import annotations

import bisect
import ctypes
import itertools
from concurrent.futures import ThreadPoolExecutor

import torch

from brainwork.engine import native

_P, _I = ctypes.c_void_p, ctypes.c_int64


class NativeDecode:
    """One query token per sequence, keys and values read in place from the block tables."""

    def __init__(self, lib: ctypes.CDLL, threads: int) -> None:
        fn = lib.paged_decode
        fn.argtypes = [_P, _P, _P, _P, _P, _P, _P, _I, _I, _I, _I, _I, _I, ctypes.c_float, _I]
        fn.restype = None
        self._fn, self.threads = fn, max(1, threads)
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="brainwork-attn") if self.threads > 1 else None

    @classmethod
    def create(cls, dtype: torch.dtype, head_dim: int) -> NativeDecode | None:
        """The kernel handles float32 caches with head_dim a multiple of 8; None otherwise."""
        if dtype != torch.float32 or head_dim % 8:
            return None
        lib = native.load("paged_decode")
        return None if lib is None else cls(lib, torch.get_num_threads())

    def splits(self, lens: torch.Tensor) -> list[tuple[int, int]]:
        """Contiguous row ranges of about equal work (sum of context lengths) per thread."""
        n = lens.shape[0]
        if self.threads == 1 or n < 2:
            return [(0, n)]
        cum = list(itertools.accumulate(lens.tolist()))
        targets = [cum[-1] * j / self.threads for j in range(1, self.threads)]
        cuts = {min(max(bisect.bisect_left(cum, t), 1), n - 1) for t in targets}
        bounds = [0, *sorted(cuts), n]
        return [(a, b) for a, b in itertools.pairwise(bounds) if b > a]

    def __call__(
        self,
        q: torch.Tensor,  # (N, Hq, D) float32, contiguous
        out: torch.Tensor,  # (N, Hq, D) float32, contiguous: rows `rows` are written
        k_cache: torch.Tensor,  # (num_blocks, bs, Hkv, D)
        v_cache: torch.Tensor,
        rows: torch.Tensor,  # (B,) int64: query row of each sequence
        lens: torch.Tensor,  # (B,) int64: context length including this token
        tables: torch.Tensor,  # (B, nb) int64 block tables, padded
        parts: list[tuple[int, int]],
        scale: float,
        window: int | None,
    ) -> None:
        _, bs, hkv, d = k_cache.shape
        hq, nb = q.shape[1], tables.shape[1]
        ptrs = (q.data_ptr(), out.data_ptr(), k_cache.data_ptr(), v_cache.data_ptr())
        r0, l0, t0 = rows.data_ptr(), lens.data_ptr(), tables.data_ptr()

        def run(part: tuple[int, int]) -> None:
            a, b = part
            self._fn(*ptrs, r0 + 8 * a, l0 + 8 * a, t0 + 8 * a * nb, nb, b - a, hq, hkv, d, bs, scale, window or 0)

        if self._pool is None or len(parts) == 1:
            for part in parts:
                run(part)
        else:
            list(self._pool.map(run, parts))
