"""Which rows of a flat token batch belong to which sequence, as llama.cpp would batch them.

ggml picks a matmul kernel by the number of activation rows it is given (Q4_K repacked: a gemm
for each full group of 4 rows, a gemv for the rest; K-quants: a tiled kernel from 8 rows), and
the llama.cpp server decodes one request's chunk at a time. The engine puts many sequences into
one flat batch, so it states here how many rows each scheduled chunk has and whether its last
row's logits are wanted; the ggml-arithmetic modules then give every row the kernel that
llama.cpp gives it when that request runs alone. Without a statement the whole batch is one
chunk that wants its last row, which is what a direct model call means.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar

import torch

# ((rows, wants_logits), ...) of the chunks in the flat batch, in row order
_CHUNKS: ContextVar[tuple[tuple[int, bool], ...] | None] = ContextVar("ggml_chunks", default=None)


@contextmanager
def chunk_rows(rows: Sequence[int], outputs: Sequence[bool]) -> Iterator[None]:
    """Within the block, a flat batch of `sum(rows)` rows is made of chunks of these sizes."""
    token = _CHUNKS.set(tuple(zip(rows, outputs, strict=True)))
    try:
        yield
    finally:
        _CHUNKS.reset(token)


def chunks(n_rows: int) -> tuple[tuple[int, bool], ...]:
    """The chunks of a batch of `n_rows` rows; one chunk when nothing (or something else) was said."""
    stated = _CHUNKS.get()
    if stated is None or sum(r for r, _ in stated) != n_rows:
        return ((n_rows, True),)
    return stated


def per_chunk(fn: Callable[[torch.Tensor, int], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """`fn(rows, chunk_len)` over the rows of `x` (N, K) as llama.cpp would run them: every
    multi-row chunk on its own, all one-row chunks (decodes) together with `chunk_len` 1 (the
    one-row kernels treat rows independently). Returns (N, M) in the rows' order."""
    parts = chunks(x.shape[0])
    if len(parts) == 1:
        return fn(x, x.shape[0])
    singles: list[int] = []
    groups: list[tuple[int, int]] = []
    start = 0
    for n, _ in parts:
        if n == 1:
            singles.append(start)
        elif n:
            groups.append((start, n))
        start += n
    outs: list[torch.Tensor] = []
    where: list[torch.Tensor] = []
    if singles:
        idx = torch.tensor(singles)
        outs.append(fn(x[idx], 1))
        where.append(idx)
    for s, n in groups:
        outs.append(fn(x[s : s + n], n))
        where.append(torch.arange(s, s + n))
    y = torch.cat(outs)
    out = torch.empty_like(y)
    out[torch.cat(where)] = y
    return out
