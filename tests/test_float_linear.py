"""`FloatLinear`: the small-batch float32 GEMM kernel (`engine/native/small_gemm.c`) against
`F.linear` in each of its builds (AVX-512 where the machine has it, AVX2, portable C); oneDNN
above `small_rows`; the packed oneDNN weight from `packed_rows`; its place in a loaded model.

Tolerance: 1e-4 relative to the output's scale (summation order only)."""

from __future__ import annotations

import ctypes
import platform
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.profiler import ProfilerActivity, profile

from brainwork.loader.decoder import load_decoder
from brainwork.models import vocab
from brainwork.quant import float_linear
from brainwork.quant.float_linear import FloatLinear, float_linears, pack_float_linears
from brainwork.store import resolve_model
from tests.native_builds import build_function
from tests.tiny_models import make_checkpoint

SHAPES = [(1, 576, 960), (5, 576, 1536), (7, 1000, 13), (130, 64, 5), (3, 17, 9), (64, 896, 4864 // 8)]
_P, _I = ctypes.c_void_p, ctypes.c_int64


@pytest.fixture(scope="module", params=["native", "haswell", "x86-64"])
def gemm(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """`(x, w, bias) -> out` through one build: the cached native one, AVX2 only, or portable C."""
    if request.param == "native":
        assert float_linear.available(), "the C kernel did not build (is a C compiler installed?)"
        return float_linear.small_gemm
    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("the AVX2 and portable builds are checked on x86-64")
    fn = build_function(
        tmp_path_factory.mktemp("gemm"), "small_gemm", request.param, "small_gemm", float_linear.SIGNATURE
    )

    def run(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        out = torch.empty(x.shape[0], w.shape[0])
        b = 0 if bias is None else bias.data_ptr()
        fn(x.data_ptr(), w.data_ptr(), b, out.data_ptr(), x.shape[0], x.shape[1], w.shape[0])
        return out

    return run


@pytest.mark.parametrize(("m", "k", "n"), SHAPES)
@pytest.mark.parametrize("with_bias", [False, True])
def test_matches_linear(gemm, m: int, k: int, n: int, with_bias: bool) -> None:
    gen = torch.Generator().manual_seed(m * k + n)
    x, w = torch.randn(m, k, generator=gen), torch.randn(n, k, generator=gen)
    bias = torch.randn(n, generator=gen) if with_bias else None
    want = F.linear(x, w, bias)
    got = gemm(x, w, bias)
    assert got.shape == (m, n)
    assert (got - want).abs().max().item() < 1e-4 * want.abs().max().item()


def test_a_row_does_not_depend_on_its_batch_company(gemm) -> None:
    """Each output is one fixed-order dot product: row 3 alone equals row 3 among 40, bit for bit."""
    gen = torch.Generator().manual_seed(0)
    x, w = torch.randn(40, 576, generator=gen), torch.randn(200, 576, generator=gen)
    assert torch.equal(gemm(x[3:4].contiguous(), w)[0], gemm(x, w)[3])


def _ops(fn) -> set[str]:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return {e.key for e in prof.key_averages()}


def test_swapped_linear_keeps_its_weights_and_picks_its_path_by_rows() -> None:
    torch.manual_seed(0)
    emb = nn.Embedding(50, 16)
    head = nn.Linear(16, 50, bias=False)
    head.weight = emb.weight  # tied, as a small model's head
    mixed = nn.ModuleDict({"emb": emb, "head": head, "bf16": nn.Linear(16, 8).to(torch.bfloat16)})
    assert float_linears(mixed) == 1  # the bfloat16 linear keeps torch
    assert type(mixed["head"]) is FloatLinear and mixed["head"].weight is emb.weight
    with torch.inference_mode():
        for rows in (1, FloatLinear.small_rows, FloatLinear.small_rows + 1):
            x = torch.randn(2, rows, 16)  # leading dims are flattened into rows
            assert (mixed["head"](x) - F.linear(x, emb.weight)).abs().max().item() < 1e-5
            ops = _ops(lambda x=x: mixed["head"](x))
            assert "aten::mm" not in ops and "aten::linear" not in ops
            if vocab.ONEDNN:
                assert ("mkldnn::_linear_pointwise" in ops) == (2 * rows > FloatLinear.small_rows)


def test_a_loaded_float_model_decodes_on_the_kernel(tmp_path: Path) -> None:
    make_checkpoint(tmp_path, "llama", attention_bias=True)
    loaded = load_decoder(resolve_model(str(tmp_path)), progress=False)
    layer = loaded.model.model.layers[0]
    assert loaded.kept["fused groups"] == 2 * loaded.config.num_layers  # q/k/v and gate/up
    assert type(layer.self_attn.qkv_proj) is FloatLinear and layer.self_attn.q_proj is None
    assert type(layer.mlp.down_proj) is FloatLinear
    assert loaded.kept["float32 fast path"] == sum(type(m) is FloatLinear for m in loaded.model.modules())


@pytest.mark.skipif(not float_linear.packable(), reason="this torch has no oneDNN weight reorder")
@pytest.mark.parametrize(("k", "n"), [(16, 40), (17, 130), (576, 960), (1000, 13)])  # K, N off the block sizes too
def test_packed_weight_matches_linear(k: int, n: int) -> None:
    torch.manual_seed(0)
    a, b = nn.Linear(k, 8), nn.Linear(k, 8)
    b.weight = a.weight  # shared by two linears: neither can drop the plain weight
    mixed = nn.ModuleDict({"a": a, "b": b, "proj": nn.Linear(k, n)})
    float_linears(mixed)
    proj = mixed["proj"]
    weight = proj.weight.detach().clone()
    assert pack_float_linears(mixed) == 1
    assert a.packed is None and b.packed is None and a.weight is b.weight
    assert proj.weight is None and torch.equal(proj.dense_weight(), weight)  # one copy, the packed one
    with torch.inference_mode():
        decode = float_linear._decode_kernel() is not None and proj.layout[0] % 32 == 0
        for rows in (1, 2, FloatLinear.packed_rows, FloatLinear.small_rows + 1, 70, FloatLinear.decode_rows + 1):
            x = torch.randn(rows, k)
            want = F.linear(x, weight, proj.bias)
            assert (proj(x) - want).abs().max().item() < 1e-5 * want.abs().max().item()
            # up to decode_rows decode_gemm (AVX-512 builds); else one or two rows blocked_gemm on
            # the packed buffer, and from packed_rows on oneDNN reads it
            on_decode = decode and rows <= FloatLinear.decode_rows
            onednn = rows >= FloatLinear.packed_rows and not on_decode
            assert ("mkldnn::_linear_pointwise" in _ops(lambda x=x: proj(x))) == onednn
        # every path reads the packed buffer: double it in place, the outputs double
        float_linear.packed_view(proj.packed).mul_(2)
        for rows in (1, FloatLinear.packed_rows, FloatLinear.decode_rows + 1):
            x = torch.randn(rows, k)
            assert torch.allclose(proj(x) - proj.bias, 2 * F.linear(x, weight), atol=1e-4)
    x = torch.randn(2, k, requires_grad=True)  # autograd takes F.linear on the unpacked weight
    assert torch.allclose(proj(x), F.linear(x, 2 * weight, proj.bias), atol=1e-4)


@pytest.mark.skipif(not float_linear.packable(), reason="this torch has no oneDNN weight reorder")
def test_a_tied_head_is_packed_and_its_embedding_reads_the_packed_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    emb = nn.Embedding(130, 24)  # 130 rows: the last block of 64 is padded
    head = nn.Linear(24, 130, bias=False)
    head.weight = emb.weight
    table = emb.weight.detach().clone()
    model = nn.ModuleDict({"emb": emb, "head": head})
    float_linears(model)
    assert pack_float_linears(model) == 0  # the table is all the weights: packing it would double the peak
    assert head.packed is None and head.weight is emb.weight
    monkeypatch.setattr(float_linear, "TIED_SHARE", 1.0)
    assert pack_float_linears(model) == 1
    assert type(emb) is float_linear.PackedEmbedding and emb.weight is None and head.weight is None
    ids = torch.tensor([[0, 63, 64], [129, 5, 127]])
    with torch.inference_mode():
        assert torch.equal(emb(ids), table[ids])  # (2, 3, 24): rows exactly
        x = torch.randn(5, 24)
        assert torch.allclose(head(x), x @ table.T, atol=1e-5)


def test_a_row_of_the_blocked_kernel_does_not_depend_on_its_partner() -> None:
    layer = nn.Linear(576, 200)
    float_linears(layer)
    if not (float_linear.packable() and layer.pack()):
        pytest.skip("no blocked layout here")
    x = torch.randn(2, 576)
    with torch.inference_mode():
        assert torch.equal(layer(x[1:2])[0], layer(x)[1])


needs_decode_kernel = pytest.mark.skipif(
    not (float_linear.packable() and float_linear._decode_kernel() is not None),
    reason="decode_gemm is built for AVX-512 machines only",
)


@needs_decode_kernel
@pytest.mark.parametrize(("k", "n"), [(576, 960), (896, 100), (17, 64), (1536, 576)])  # 100: a padded last block
@pytest.mark.parametrize("rows", [1, 2, 5, 12, 13, 64, 128])  # tiles of 12 and their remainders
def test_decode_kernel_matches_linear(rows: int, k: int, n: int) -> None:
    torch.manual_seed(rows)
    layer = nn.Linear(k, n)
    want_weight = layer.weight.detach().clone()
    float_linears(layer)
    assert layer.pack() and layer.layout[0] % 32 == 0
    x = torch.randn(rows, k)
    with torch.inference_mode():
        got = layer(x)
    want = F.linear(x, want_weight, layer.bias)
    assert got.shape == (rows, n)
    assert (got - want).abs().max().item() < 1e-5 * want.abs().max().item()
    assert "mkldnn::_linear_pointwise" not in _ops(lambda: layer(x))


@needs_decode_kernel
def test_a_row_of_the_decode_kernel_does_not_depend_on_its_batch_company() -> None:
    layer = nn.Linear(576, 960)
    float_linears(layer)
    assert layer.pack()
    x = torch.randn(FloatLinear.decode_rows, 576)
    with torch.inference_mode():
        whole = layer(x)
        for rows in (1, 7, 13, 64):  # other tile splits put row 0 and the last row in other tiles
            assert torch.equal(layer(x[:rows])[0], whole[0])
            assert torch.equal(layer(x[-rows:])[-1], whole[-1])


def test_a_loaded_float_model_packs_every_projection_and_its_tied_head(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_checkpoint(tmp_path, "llama", tie_word_embeddings=True)
    monkeypatch.setattr(float_linear, "TIED_SHARE", 1.0)  # the tiny model is mostly its table
    loaded = load_decoder(resolve_model(str(tmp_path)), progress=False)
    layers = [m for m in loaded.model.modules() if type(m) is FloatLinear]
    want = len(layers) if float_linear.packable() else 0
    held = sum(m.packed is not None or m.blocks is not None for m in layers)  # the tied head may be blocked in place
    assert loaded.kept.get("float32 packed for oneDNN", 0) == want == held
    if want:
        assert type(loaded.model.model.embed_tokens) is float_linear.PackedEmbedding
    monkeypatch.setenv("BRAINWORK_PACK", "0")  # the way out keeps every weight plain
    plain = load_decoder(resolve_model(str(tmp_path)), progress=False)
    assert "float32 packed for oneDNN" not in plain.kept
    assert all(m.packed is None and m.blocks is None for m in plain.model.modules() if type(m) is FloatLinear)


@needs_decode_kernel
def test_a_tied_head_is_blocked_in_place_and_its_embedding_reads_the_blocks() -> None:
    """A tied table over `TIED_SHARE` of the weights is rearranged where it lies (no second copy);
    the head runs on decode_gemm at every row count, in parts of `decode_rows`; the embedding reads
    its rows from the blocks."""
    torch.manual_seed(0)
    emb = nn.Embedding(320, 40)  # 320 rows: 10 blocks of 32
    head = nn.Linear(40, 320, bias=False)
    head.weight = emb.weight
    table = emb.weight.detach().clone()
    address = emb.weight.data_ptr()
    model = nn.ModuleDict({"emb": emb, "head": head})
    float_linears(model)
    assert pack_float_linears(model) == 1
    assert head.blocks is not None and head.packed is None and head.weight is None and emb.weight is None
    assert head.blocks.data_ptr() == address and head.blocks.shape == (10, 40, 32)  # the table's own storage
    assert torch.equal(head.blocks[1, :, 5], table[32 + 5])  # row n at (n / 32, :, n % 32)
    assert torch.equal(head.dense_weight(), table)
    ids = torch.tensor([[0, 31, 32], [319, 5, 200]])
    with torch.inference_mode():
        assert torch.equal(emb(ids), table[ids])
        for rows in (1, 7, FloatLinear.decode_rows, 2 * FloatLinear.decode_rows + 3):
            x = torch.randn(rows, 40)
            want = x @ table.T
            assert (head(x) - want).abs().max().item() < 1e-5 * want.abs().max().item()
            assert "mkldnn::_linear_pointwise" not in _ops(lambda x=x: head(x))
    x = torch.randn(2, 40, requires_grad=True)  # autograd takes F.linear on the unblocked weight
    assert torch.allclose(head(x), x @ table.T, atol=1e-5)
