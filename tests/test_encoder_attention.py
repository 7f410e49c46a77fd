"""The encoder attention kernel (`engine/native/encoder_attention.c`) against torch's SDPA with a
key mask, in each build (AVX-512 where the machine has it, AVX2, portable C), and in a model.

Tolerance: float32 1e-5 absolute (inputs of scale ~2; summation order and the polynomial exp
only); bfloat16 against SDPA in float32 on the same bfloat16 inputs: within one bfloat16 rounding
of the output (2^-7 relative)."""

from __future__ import annotations

import platform
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from brainwork.engine.encoder import EncoderRunner
from brainwork.layers import encoder_attention
from tests.native_builds import build_function
from tests.tiny_encoders import make_encoder, random_sentences, token_ids


@pytest.fixture(scope="module", params=["native", "haswell", "x86-64"])
def kernel(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """A build of the kernel: the cached native one, AVX2 only, or portable C."""
    if request.param == "native":
        fn = encoder_attention._kernel()
        assert fn is not None, "the C kernel did not build (is a C compiler installed?)"
        return fn
    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("the AVX2 and portable builds are checked on x86-64")
    tmp = tmp_path_factory.mktemp("encoder_attention")
    return build_function(tmp, "encoder_attention", request.param, "encoder_attention", encoder_attention.SIGNATURE)


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lengths: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, Tq, H) q, (B, T, H) k, v -> (B, Tq, H), float32, keys past each length masked out."""
    b, tq, h = q.shape
    t, d = k.shape[1], h // heads

    def split(x: torch.Tensor, n: int) -> torch.Tensor:
        return x.float().reshape(b, n, heads, d).transpose(1, 2)

    mask = (torch.arange(t)[None, :] < lengths[:, None])[:, None, None, :]  # (B, 1, 1, T)
    out = F.scaled_dot_product_attention(split(q, tq), split(k, t), split(v, t), mask)
    return out.transpose(1, 2).reshape(b, tq, h)


# (batch, tokens, heads, head_dim): tokens across the 2 x lanes tiles, one token, BERT's 64
SHAPES = [(3, 7, 2, 32), (5, 40, 12, 32), (4, 70, 3, 64), (2, 1, 4, 16), (6, 33, 2, 48)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", SHAPES)
def test_kernel_matches_masked_sdpa(kernel, shape: tuple[int, int, int, int], dtype: torch.dtype) -> None:
    b, t, heads, d = shape
    torch.manual_seed(sum(shape))
    h = heads * d
    qkv = (torch.randn(b, t, 3 * h) * 2).to(dtype)  # (B, T, 3H): the fused projection's output
    q, k, v = qkv.split(h, dim=-1)  # strided views, as the model passes them
    lengths = torch.randint(1, t + 1, (b,))
    lengths[0] = t  # one unpadded row
    out = encoder_attention.run(kernel, q, k, v, lengths, heads)
    if out is None:  # a head size this build does not take (d not a multiple of its lanes)
        assert d % 16, f"the kernel refused head_dim {d}"
        return
    ref = _sdpa(q, k, v, lengths, heads)
    assert out.dtype == dtype and out.shape == (b, t, h)
    if dtype == torch.float32:
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)
    else:
        torch.testing.assert_close(out.float(), ref, atol=1e-5, rtol=2**-7)


def test_one_query_row_against_all_keys(kernel) -> None:
    """A classifier's last layer asks for position 0 only: q (B, 1, H) from its own projection."""
    torch.manual_seed(1)
    b, t, heads, d = 4, 21, 3, 32
    h = heads * d
    q, k, v = torch.randn(b, 1, h), torch.randn(b, t, h), torch.randn(b, t, h)
    lengths = torch.tensor([21, 5, 1, 13])
    out = encoder_attention.run(kernel, q, k, v, lengths, heads)
    assert out is not None
    torch.testing.assert_close(out, _sdpa(q, k, v, lengths, heads), atol=1e-5, rtol=0)


def test_a_padded_key_never_counts() -> None:
    """Huge values past a sequence's length change nothing in its outputs."""
    torch.manual_seed(2)
    b, t, heads, d = 2, 30, 2, 32
    h = heads * d
    qkv = torch.randn(b, t, 3 * h)
    lengths = torch.tensor([30, 9])
    first = encoder_attention.attend(*qkv.split(h, dim=-1), lengths, heads)
    qkv[1, 9:] = 1e4
    second = encoder_attention.attend(*qkv.split(h, dim=-1), lengths, heads)
    assert first is not None and second is not None
    torch.testing.assert_close(first[1, :9], second[1, :9], atol=0, rtol=0)


def test_prefix_lengths_only_for_right_padded_masks() -> None:
    right = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1], [1, 0, 0, 0]])
    assert encoder_attention.prefix_lengths(right).tolist() == [3, 4, 1]
    assert encoder_attention.prefix_lengths(torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]])) is None  # left padding
    assert encoder_attention.prefix_lengths(torch.tensor([[1, 0, 1, 0]])) is None  # holes


def test_attend_declines_what_it_does_not_take() -> None:
    q = torch.randn(2, 5, 64)
    lengths = torch.tensor([5, 3])
    assert encoder_attention.attend(q.half(), q.half(), q.half(), lengths, 2) is None  # float16
    assert encoder_attention.attend(q, q, q, lengths.int(), 2) is None  # int32 lengths
    grad = q.clone().requires_grad_()
    assert encoder_attention.attend(grad, q, q, lengths, 2) is None  # autograd keeps SDPA


@pytest.mark.parametrize(
    ("case", "sizes"),
    [("bert", {"hidden_size": 64, "num_attention_heads": 2}), ("distilbert-cls", {"dim": 64, "n_heads": 2})],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_an_encoder_on_the_kernel_matches_transformers(
    case: str, sizes: dict[str, int], dtype: torch.dtype, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """head_dim 32: a right-padded batch runs on the kernel (SDPA never called) and every position
    matches transformers (float32 SDPA): 1e-4 in float32; in bfloat16 the encoder's own rounding
    (0.1 on hidden states of scale ~1, as the bfloat16 parity tests allow)."""
    reference = make_encoder(tmp_path, case, **sizes)
    runner = EncoderRunner(tmp_path, dtype=dtype)
    rows = [token_ids(t) for t in random_sentences([9, 2, 30, 0, 17])]
    ids = torch.zeros(len(rows), max(map(len, rows)), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, : len(r)], mask[i, : len(r)] = torch.tensor(r), 1
    with torch.no_grad():
        want = reference(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[-1]
    calls: list[int] = []
    real = F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    with torch.inference_mode():
        hidden = runner.model(ids, mask, None)
    assert not calls, "the encoder fell back to SDPA"
    tol = 1e-4 if dtype == torch.float32 else 0.1
    assert (hidden.float() - want).abs().max().item() < tol


def test_padding_never_sets_the_softmax_max(kernel) -> None:
    """Real scores of -200 and -190: the padded keys' score (0) must not be the max, or both real
    weights would clamp to the same tiny exponential and the output become their plain mean."""
    d, scale = 32, 32**-0.5
    q, k, v = torch.zeros(1, 1, d), torch.zeros(1, 5, d), torch.randn(1, 5, d)
    q[0, 0, 0] = 1.0
    k[0, 0, 0], k[0, 1, 0] = -200 / scale, -190 / scale
    lengths = torch.tensor([2])
    out = encoder_attention.run(kernel, q, k, v, lengths, 1)
    assert out is not None
    torch.testing.assert_close(out, _sdpa(q, k, v, lengths, 1), atol=1e-5, rtol=0)
    assert (out[0, 0] - v[0, 1]).abs().max() < 1e-3  # softmax of (-200, -190) is (4.5e-5, ~1)
