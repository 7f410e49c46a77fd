"""The C form of ggml's arithmetic (`numerics/native.py`) against ggml itself and against the torch
emulation: zero differing elements."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from brainwork.loader.gguf import GGUFFile
from brainwork.numerics import native, ops
from brainwork.numerics.flash_attention import ggml_attention
from brainwork.store import resolve_model
from tests.refs import ggml_oracle as ggml

pytestmark = pytest.mark.skipif(not native.available(), reason="no C compiler here")


def _acts(rows: int, k: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_t(3, (rows, k)) * 0.5
    grid = rng.integers(-20, 21, (rows, k)) * 0.25  # ties in the activation rounding
    return np.where(rng.random((rows, k)) < 0.3, grid, x).astype(np.float32)


def _real(name: str, qtype: str) -> np.ndarray:
    f = GGUFFile(resolve_model(name, progress=False).path)
    t = next(t for t in f.tensors if t.qtype.name == qtype)
    return np.array(f.raw_rows(t)[:96])  # a writable copy of 96 rows


@pytest.mark.parametrize(
    ("qtype", "source"),
    [("Q4_0", None), ("Q4_1", "smollm2-135m-instruct"), ("Q8_0", "smollm2-135m-instruct"),
     ("Q5_0", "qwen2.5-coder-0.5b-instruct")],
)  # fmt: skip
@pytest.mark.parametrize("rows", [1, 5, 9, 13, 77])  # 8-row tiles from 8 rows, in blocks of 64, the rest alone
def test_block_matmul_matches_ggml(qtype: str, source: str | None, rows: int) -> None:
    if source is None:  # no packaged model has Q4_0 tensors: ggml quantizes random weights
        w = np.random.default_rng(1).standard_normal((96, 576)).astype(np.float32)
        raw = np.stack([ggml._quantize("quantize_row_q4_0", r, 32, 18).reshape(-1) for r in w])
    else:
        raw = _real(source, qtype)
    k = raw.shape[1] // {"Q4_0": 18, "Q4_1": 20, "Q5_0": 22, "Q8_0": 34}[qtype] * 32
    x = _acts(rows, k, rows)
    got = native.block_mm(qtype, torch.from_numpy(raw), torch.from_numpy(x)).numpy()
    assert np.array_equal(got, ggml.mul_mat(raw, qtype, x))
    odd = np.ascontiguousarray(raw[:-1])  # tiles take weight rows in pairs; the odd last one goes alone
    got = native.block_mm(qtype, torch.from_numpy(odd), torch.from_numpy(x)).numpy()
    assert np.array_equal(got, ggml.mul_mat(odd, qtype, x))


@pytest.mark.parametrize(
    ("model", "qtype"), [("smollm2-135m-instruct", "Q8_0"), ("qwen2.5-coder-0.5b-instruct", "Q5_0")]
)
def test_embedding_rows_equal_ggml(model: str, qtype: str) -> None:
    """The token embedding's own Q8_0 and Q5_0 paths (no gguf row grouping) give ggml's rows."""
    from brainwork.quant.embedding import GGUFEmbedding

    f = GGUFFile(resolve_model(model, progress=False).path)
    t = next(t for t in f.tensors if t.name == "token_embd.weight")
    raw = f.raw_rows(t)
    assert t.qtype.name == qtype
    dim = raw.shape[1] // {"Q8_0": 34, "Q5_0": 22}[qtype] * 32
    emb = GGUFEmbedding(raw, t.qtype, dim, torch.float32)
    ids = torch.tensor([[0, 17, raw.shape[0] - 1], [2, 2, 30000]])
    got = emb(ids)
    assert got.shape == (2, 3, dim)
    assert np.array_equal(got.reshape(6, dim).numpy(), ggml.dequantize(raw[ids.reshape(-1).numpy()], qtype))


@pytest.mark.parametrize("window", [None, 5])
@pytest.mark.parametrize("dot", ["random", "llama"])
@pytest.mark.parametrize(("hq", "decodes_only"), [(6, False), (10, False), (10, True)])
def test_paged_attention_matches_torch_emulation(window: int | None, dot: str, hq: int, decodes_only: bool) -> None:
    """Three sequences in a shuffled paged cache: a 7-row prompt chunk and two decodes, grouped
    query heads, against `ggml_attention` (itself checked against ggml's flash attention). The
    q.k summation order: a random one (gathered per key), and `llama` files' interleave of the
    two rotary halves (unpacked in registers by its own C path). Heads sharing a KV head go
    through the keys together, up to 4 at once: groups of 3 and of 5 (cut into 4 + 1); the
    two decode rows alone take the few-rows split of the heads between threads."""
    g = torch.Generator().manual_seed(0)
    hkv, d, bs = 2, 64, 4
    lengths = [11, 23, 6]
    blocks = sum(-(-n // bs) for n in lengths)
    order = torch.randperm(blocks, generator=g)
    k_cache = (torch.randn(blocks, bs, hkv, d, generator=g) * 2).half()
    v_cache = torch.randn(blocks, bs, hkv, d, generator=g).half()
    tables, used = [], 0
    for n in lengths:
        nb = -(-n // bs)
        tables.append(order[used : used + nb].tolist() + [0] * (8 - nb))
        used += nb
    table = torch.tensor(tables, dtype=torch.long)
    rows = [(0, p) for p in range(4, 11)] + [(1, 22), (2, 5)]  # (sequence, position)
    rows = rows[-2:] if decodes_only else rows
    q = torch.randn(len(rows), hq, d, generator=g)
    dot_order = torch.randperm(d, generator=g)
    if dot == "llama":
        from brainwork.numerics.apply import ggml_dot_order

        class _Llama:
            architecture = "llama"

        dot_order = ggml_dot_order(_Llama(), d)  # type: ignore[arg-type]
    got = native.attention(
        q, k_cache, v_cache, torch.tensor([s for s, _ in rows]), torch.tensor([p for _, p in rows]),
        table, 0.125, window, dot_order,
    )  # fmt: skip
    for i, (s, p) in enumerate(rows):
        cells = torch.tensor([table[s, j // bs] * bs + j % bs for j in range(p + 1)])
        keys = k_cache.view(-1, hkv, d)[cells]
        vals = v_cache.view(-1, hkv, d)[cells]
        want = ggml_attention(q[i : i + 1], torch.tensor([p]), keys, vals, 0.125, window, dot_order)
        assert torch.equal(got[i : i + 1], want), f"row {i}"


def test_element_wise_ops_equal_their_torch_forms() -> None:
    """RMS norm, SiLU (with inputs past the expf range split, |x| > 126 and > 192) and RoPE: the C
    forms equal the torch forms, which stay the fallback; both are checked against ggml in
    tests/test_ggml_numerics.py."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(7, 576, generator=g) * torch.logspace(-3, 2, 576)
    w = torch.randn(576, generator=g)
    assert torch.equal(native.rms_norm(x, w, 1e-5), ops.rms_norm_torch(x, w, 1e-5))
    s = torch.cat([torch.randn(4000, generator=g) * 20, torch.tensor([-300.0, -150.0, 0.0, -0.0, 90.0, 130.0])])
    s = s[: s.numel() // 8 * 8].view(-1, 8)
    assert torch.equal(native.silu(s), ops.silu_torch(s))
    q = torch.randn(5, 3, 64, generator=g)
    cos, sin = ops.rope_cos_sin(torch.tensor([0, 1, 7, 300, 4095]), 64, 10000.0)
    assert torch.equal(native.apply_rope(q, cos, sin), ops.apply_rope_torch(q, cos, sin))


def test_ggml_loading_keeps_blocks_and_makes_no_float_copy() -> None:
    """`quantization="ggml"` builds its matmuls from the GGUF blocks as the stream passes them and
    reads embedding rows from the file: peak resident growth while loading SmolLM2 (libraries
    included) stays well under what a float32 copy of the weights alone takes (measured 244 MB
    against 540 MB; with a float embedding table 322 MB; loading float weights first 677+ MB)."""
    from tests import load_memory

    f = GGUFFile(resolve_model("smollm2-135m-instruct", progress=False).path)
    float_bytes = 4 * sum(t.n_elements for t in f.tensors)
    growth, kept = load_memory.measure("smollm2-135m-instruct", "ggml")
    assert growth < 0.6 * float_bytes, (growth, kept, float_bytes)


def test_fused_projections_equal_separate_ones() -> None:
    """q/k/v stacked into one call give exactly the three separate results, batched or not."""
    f = GGUFFile(resolve_model("smollm2-135m-instruct", progress=False).path)
    parts = []
    for kind in ("q", "k", "v"):
        t = next(t for t in f.tensors if t.name == f"blk.0.attn_{kind}.weight")
        parts.append(native.NativeBlockLinear(torch.from_numpy(np.array(f.raw_rows(t))), t.qtype.name, 576, None))
    block = torch.nn.Module()
    block.q_proj, block.k_proj, block.v_proj = parts
    assert native.fuse_projections(block) == 1
    assert block.q_proj is None
    x = torch.from_numpy(_acts(6, 576, 11))
    for rows in (x[:1], x):
        assert torch.equal(block.qkv_proj(rows), torch.cat([p(rows) for p in parts], dim=-1))


def _stack_model(name: str = "smollm2-135m-instruct"):
    from brainwork import LLM

    llm = LLM(name, quantization="ggml", progress=False)
    return llm.engine.model


_MIXED = [  # (start, tokens, block table) per chunk, per step
    [(0, 13, [7, 2]), (0, 5, [4])],
    [(13, 1, [7, 2]), (5, 9, [4, 0]), (0, 3, [9])],
    [(14, 1, [7, 2]), (14, 1, [4, 0]), (3, 1, [9])],
    [(15, 1, [7, 2])],  # one row alone: the stack's one-row path (per-thread copies of the row)
]


@pytest.mark.parametrize(
    ("name", "stack_steps"),
    [("smollm2-135m-instruct", 4), ("qwen2.5-coder-0.5b-instruct", 2)],  # Q4_1 blocks; Q5_0/Q8_0 + Q4_K/Q6_K
)
def test_native_stack_equals_the_module_path(name: str, stack_steps: int) -> None:
    """All blocks in one C call (`numerics/native_stack.py`) against the module path on the same
    steps: prompt chunks from position 0, a prompt chunk continuing a sequence and a decode in one
    flat batch, then decodes only (three rows, then one), over a shuffled paged cache. SmolLM2 runs
    every step in the stack; Qwen (K-quant weights: C kernels for one-row chunks only) the
    decode-only ones. Hidden
    states and both caches: zero differing bits."""
    from brainwork.engine.paged_cache import ChunkMeta, PagedAttention, PagedKVCache
    from brainwork.numerics.rows import chunk_rows

    model = _stack_model(name)
    stack, cfg = model.model.stack, model.config
    assert stack is not None
    caches = []
    for _ in range(2):
        c = PagedKVCache(cfg.num_layers, 12, 8, cfg.num_kv_heads, cfg.head_dim, torch.float16)
        c.ggml, c.ggml_order = True, model.ggml_attention if isinstance(model.ggml_attention, torch.Tensor) else None
        caches.append(c)
    g = torch.Generator().manual_seed(3)
    ran = 0
    with torch.inference_mode():
        for chunks in _MIXED:
            n = sum(t for _, t, _ in chunks)
            ids = torch.randint(1000, 40000, (n,), generator=g)
            positions = torch.cat([torch.arange(s, s + t) for s, t, _ in chunks])
            outs = []
            for use_stack, cache in zip((True, False), caches, strict=True):
                model.model.stack = stack if use_stack else None
                kv = PagedAttention(cache, [ChunkMeta(s, t, list(b)) for s, t, b in chunks])
                ran += use_stack and stack.accepts(kv)
                with chunk_rows([t for _, t, _ in chunks], [True] * len(chunks)):  # as the runner states them
                    outs.append(model(ids, positions, kv))
            model.model.stack = stack
            assert torch.equal(outs[0], outs[1])
    assert ran == stack_steps
    for a, b in zip(caches[0].k + caches[0].v, caches[1].k + caches[1].v, strict=True):
        assert torch.equal(a, b)


def test_native_stack_covers_only_native_blocks() -> None:
    """A block whose matmul is not a C block matmul (here a float Linear) keeps the module path."""
    from brainwork.numerics.native_stack import NativeStack

    model = _stack_model()
    layers = model.model.layers
    assert NativeStack.of(layers) is not None
    layers[3].self_attn.o_proj = torch.nn.Linear(576, 576, bias=False)
    assert NativeStack.of(layers) is None


def test_ggml_perplexity_within_1_percent_of_float() -> None:
    """Issue 7's accuracy figure on llama.cpp's arithmetic: SmolLM2's perplexity of 512 tokens of
    a fixed public text (Debian's GPL-3) within 1% of float weights dequantized from the same file
    (measured +0.68%; Qwen2.5-Coder +0.67% by `benchmarks/quant_vs_peers.py --quantization ggml`).
    Every chunk after the first reads the float16 cache through ggml's attention."""
    from brainwork.loader.decoder import load_decoder
    from tests.test_quant import TEXT, perplexity

    resolved = resolve_model("smollm2-135m-instruct", progress=False)
    exact = load_decoder(resolved, progress=False, quantization="ggml")
    assert exact.model.model.stack is not None
    ids = exact.tokenizer.encode(TEXT.read_text())[:512]
    ppl_ggml = perplexity(exact, ids)
    del exact
    ppl_float = perplexity(load_decoder(resolved, progress=False, quantization="none"), ids)
    assert abs(ppl_ggml / ppl_float - 1) < 0.01, (ppl_ggml, ppl_float)
