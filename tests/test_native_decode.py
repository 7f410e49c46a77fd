"""The C decode-attention kernel against torch's scaled_dot_product_attention on random data."""

from __future__ import annotations

import platform
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from brainwork.engine.native_decode import NativeDecode
from tests.native_builds import build

TOL = 1e-5


def _portable(tmp: Path) -> NativeDecode:
    """The kernel's portable form (no AVX2: one dot and one expf per score), built apart."""
    return NativeDecode(build(tmp, "paged_decode", "x86-64"))


@pytest.fixture(scope="module", params=["native", "avx2", "portable"])
def kernel(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> NativeDecode:
    if request.param != "native":
        if platform.machine() not in ("x86_64", "AMD64"):
            pytest.skip("the AVX2 and portable builds are checked on x86-64, where the native one uses AVX2 or AVX-512")
        if request.param == "avx2":  # the 8-key form, which AVX-512 machines pass over for head_dims 32-256
            return NativeDecode(build(tmp_path_factory.mktemp("avx2"), "paged_decode", "haswell"))
        return _portable(tmp_path_factory.mktemp("portable"))
    k = NativeDecode.create(torch.float32, 64)
    assert k is not None, "the C kernel did not build (is a C compiler installed?)"
    return k


def test_too_many_heads_per_kv_head_is_named(kernel: NativeDecode) -> None:
    q = torch.zeros(1, 66, 8)
    kc = torch.zeros(1, 8, 2, 8)
    one = torch.ones(1, dtype=torch.int64)
    with pytest.raises(ValueError, match="33 query heads per kv head"):
        kernel(q, torch.empty_like(q), kc, kc.clone(), one - 1, one, one[None] - 1, 1.0, None)


@pytest.mark.parametrize(("hq", "hkv", "d"), [(4, 4, 32), (9, 3, 64), (8, 2, 128), (4, 1, 256), (14, 2, 64)])
@pytest.mark.parametrize("window", [None, 7, 40])
@pytest.mark.parametrize("bs", [8, 3, 16])  # the kernel walks 8-key tiles across block edges
@pytest.mark.parametrize("kv_dtype", [torch.float32, torch.bfloat16])  # bfloat16 caches are widened as read
# the AVX-512 form takes a whole sequence a task from 4 sequences a thread (2 threads here: 8),
# one (sequence, kv head) a task below that
@pytest.mark.parametrize("batch", [7, 21])
def test_kernel_matches_sdpa(
    kernel: NativeDecode, hq: int, hkv: int, d: int, window: int | None, bs: int, kv_dtype: torch.dtype, batch: int
) -> None:
    gen = torch.Generator().manual_seed(hq * d + (window or 0) + bs)
    num_blocks = 64 * 3 * 8 // bs
    kc = torch.randn(num_blocks, bs, hkv, d, generator=gen).to(kv_dtype)
    vc = torch.randn(num_blocks, bs, hkv, d, generator=gen).to(kv_dtype)
    lens = torch.tensor([1, 5, 8, 9, 30, 57, 64] * (batch // 7))  # inside, at and across block edges
    tables = torch.stack([torch.randperm(num_blocks, generator=gen)[: -(-64 // bs)] for _ in range(batch)])
    rows = torch.randperm(batch, generator=gen)  # queries sit anywhere in the flat batch
    q = torch.randn(batch, hq, d, generator=gen)
    out = torch.full_like(q, float("nan"))
    scale = d**-0.5
    kernel(q, out, kc, vc, rows, lens, tables, scale, window)
    for b in range(batch):
        n = int(lens[b])
        slots = (tables[b][torch.arange(n) // bs] * bs + torch.arange(n) % bs).tolist()
        keys = kc.float().view(-1, hkv, d)[slots].transpose(0, 1)  # (Hkv, n, D)
        vals = vc.float().view(-1, hkv, d)[slots].transpose(0, 1)
        if window is not None and n > window:
            keys, vals = keys[:, n - window :], vals[:, n - window :]
        qb = q[rows[b]].view(hkv, hq // hkv, d)  # query heads grouped under their KV head
        ref = F.scaled_dot_product_attention(qb, keys, vals, scale=scale).reshape(hq, d)
        assert (out[rows[b]] - ref).abs().max().item() < TOL


def test_a_bfloat16_cache_decodes_through_the_kernel_as_the_torch_path_does() -> None:
    """A bfloat16 model's decode step: the kernel (float32 arithmetic on the cache read in place)
    against the gather + SDPA path on the same cache (bfloat16 arithmetic: hence 3e-2)."""
    from brainwork.engine.paged_cache import ChunkMeta, PagedAttention, PagedKVCache

    gen = torch.Generator().manual_seed(1)
    hq, hkv, d, bs = 9, 3, 64, 16
    cache = PagedKVCache(1, 64, bs, hkv, d, torch.bfloat16)
    assert cache.native is not None
    for kv in (cache.k[0], cache.v[0]):
        kv.copy_(torch.randn(kv.shape, generator=gen))
    lens = [5, 17, 40, 63]
    chunks = [ChunkMeta(n - 1, 1, list(range(4 * i, 4 * i + 4))) for i, n in enumerate(lens)]
    q = torch.randn(len(lens), hq, d, generator=gen).bfloat16()
    k = torch.randn(len(lens), hkv, d, generator=gen).bfloat16()
    v = torch.randn(len(lens), hkv, d, generator=gen).bfloat16()
    fast = PagedAttention(cache, chunks).attend(0, q, k, v, scale=d**-0.5, window=None)
    native, cache.native = cache.native, None
    slow = PagedAttention(cache, chunks).attend(0, q, k, v, scale=d**-0.5, window=None)
    cache.native = native
    assert fast.dtype == torch.bfloat16
    assert (fast.float() - slow.float()).abs().max().item() < 3e-2
