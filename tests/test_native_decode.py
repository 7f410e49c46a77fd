"""The C decode-attention kernel against torch's scaled_dot_product_attention on random data."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from brainwork.engine.native_decode import NativeDecode

TOL = 1e-5


@pytest.fixture(scope="module")
def kernel() -> NativeDecode:
    k = NativeDecode.create(torch.float32, 64)
    assert k is not None, "the C kernel did not build (is a C compiler installed?)"
    return k


@pytest.mark.parametrize(("hq", "hkv", "d"), [(4, 4, 32), (9, 3, 64), (8, 2, 128), (4, 1, 256)])
@pytest.mark.parametrize("window", [None, 7, 40])
def test_kernel_matches_sdpa(kernel: NativeDecode, hq: int, hkv: int, d: int, window: int | None) -> None:
    gen = torch.Generator().manual_seed(hq * d + (window or 0))
    bs, num_blocks, batch = 8, 64, 7
    kc = torch.randn(num_blocks, bs, hkv, d, generator=gen)
    vc = torch.randn(num_blocks, bs, hkv, d, generator=gen)
    lens = torch.tensor([1, 5, 8, 9, 30, 57, 64])  # inside, at and across block edges
    tables = torch.stack([torch.randperm(num_blocks, generator=gen)[:8] for _ in range(batch)])
    rows = torch.tensor([3, 0, 6, 1, 5, 2, 4])  # queries sit anywhere in the flat batch
    q = torch.randn(batch, hq, d, generator=gen)
    out = torch.full_like(q, float("nan"))
    scale = d**-0.5
    kernel(q, out, kc, vc, rows, lens, tables, scale, window)
    for b in range(batch):
        n = int(lens[b])
        slots = (tables[b][torch.arange(n) // bs] * bs + torch.arange(n) % bs).tolist()
        keys = kc.view(-1, hkv, d)[slots].transpose(0, 1)  # (Hkv, n, D)
        vals = vc.view(-1, hkv, d)[slots].transpose(0, 1)
        if window is not None and n > window:
            keys, vals = keys[:, n - window :], vals[:, n - window :]
        qb = q[rows[b]].view(hkv, hq // hkv, d)  # query heads grouped under their KV head
        ref = F.scaled_dot_product_attention(qb, keys, vals, scale=scale).reshape(hq, d)
        assert (out[rows[b]] - ref).abs().max().item() < TOL
