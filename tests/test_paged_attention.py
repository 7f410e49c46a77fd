"""Prompt-chunk attention over the paged cache (`engine/paged_cache.PagedAttention`) against one
`scaled_dot_product_attention` over the whole sequence with a causal mask."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from brainwork.engine import paged_cache
from brainwork.engine.paged_cache import ChunkMeta, PagedAttention, PagedKVCache

TOL = 1e-5  # float32; the blocked form sums each query's keys in other tiles


def _reference(q, k, v, start: int, window: int | None, scale: float) -> torch.Tensor:
    """q `(n, Hq, D)` at positions start.., k/v `(start + n, Hkv, D)` -> `(n, Hq, D)`."""
    n, hq, _ = q.shape
    g = hq // k.shape[1]
    qp, kp = torch.arange(start, start + n)[:, None], torch.arange(k.shape[0])[None, :]
    ok = kp <= qp
    if window is not None:
        ok &= qp - kp < window
    kk, vv = (t.repeat_interleave(g, dim=1).transpose(0, 1)[None] for t in (k, v))  # (1, Hq, L, D)
    o = F.scaled_dot_product_attention(q.transpose(0, 1)[None], kk, vv, attn_mask=ok, scale=scale)
    return o[0].transpose(0, 1)


@pytest.mark.parametrize(
    ("start", "n", "hq", "hkv", "window"),
    [
        (0, 300, 9, 3, None),  # a fresh chunk: 3 blocks of 100 rows
        (0, 512, 14, 2, None),  # the largest chunk, 4 blocks of 128
        (250, 200, 9, 3, None),  # after 250 cached tokens (gathered through a reversed block table)
        (130, 400, 4, 4, 100),  # a sliding window (Gemma 3, Mistral)
        (0, 150, 9, 3, None),  # under the blocking size: one call
    ],
)
def test_prompt_chunk_matches_whole_sequence_attention(
    start: int, n: int, hq: int, hkv: int, window: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    d, bs, scale = 64, 16, 0.125
    gen = torch.Generator().manual_seed(start + n)
    total = start + n
    k, v = torch.randn(total, hkv, d, generator=gen), torch.randn(total, hkv, d, generator=gen)
    q = torch.randn(n, hq, d, generator=gen)
    cache = PagedKVCache(1, -(-total // bs) + 1, bs, hkv, d, torch.float32)
    table = list(range(cache.num_blocks - 1, -1, -1))
    if start:  # the context goes into the cache as an earlier chunk would put it
        PagedAttention(cache, [ChunkMeta(0, start, table)]).attend(
            0, torch.randn(start, hq, d), k[:start], v[:start], scale=scale, window=window
        )
    calls = []
    real = F.scaled_dot_product_attention

    def counted(*args, **kwargs):
        calls.append(args[0].shape)
        return real(*args, **kwargs)

    monkeypatch.setattr(paged_cache.F, "scaled_dot_product_attention", counted)
    got = PagedAttention(cache, [ChunkMeta(start, n, table)]).attend(
        0, q, k[start:], v[start:], scale=scale, window=window
    )
    monkeypatch.undo()
    ref = _reference(q, k, v, start, window, scale)
    assert (got - ref).abs().max().item() < TOL
    blocks = -(-n // paged_cache.Q_BLOCK) if n >= paged_cache.Q_BLOCK * 3 // 2 else 1
    assert len(calls) == blocks  # each block a call of its own
    assert sum(s[2] for s in calls) == n * (hq // hkv)  # every query row once
