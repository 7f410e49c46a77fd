"""`quantization="ggml"`: llama.cpp's own CPU arithmetic, checked op by op against ggml and end to
end against llama.cpp's greedy tokens.

Every op test asserts zero differing elements: the emulation is exact, not close. (Why exactness:
ggml quantizes activations to 8 bits before every matmul, so a one-ulp difference anywhere can
flip a rounding and move the next logits by ~0.05 nats; "close" arithmetic agrees with llama.cpp
on only 5-10 of 20 greedy continuations.)
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from brainwork import LLM, SamplingParams
from brainwork.loader.gguf import GGUFFile
from brainwork.numerics import ops
from brainwork.numerics.actquant import q8_codes, quantize_q8_k
from brainwork.numerics.blocks import block32
from brainwork.numerics.flash_attention import ggml_attention
from brainwork.numerics.linear import GGMLBlockLinear
from brainwork.store import resolve_model
from tests.prompts import PROMPTS
from tests.refs import ggml_oracle as ggml
from tests.refs.llamacpp import LlamaCpp

SMOLLM = "smollm2-135m-instruct"


def _tie_rich(rows: int, k: int, seed: int = 0) -> np.ndarray:
    """Activations where x * 127 / amax often lands exactly on k + 0.5 (rounding ties)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, k)).astype(np.float32)
    ties = (rng.integers(-126, 126, (rows, k)) + 0.5) / 8.0  # amax 127/8 below: exact ties
    x = np.where(rng.random((rows, k)) < 0.5, ties, x).astype(np.float32)
    x[:, ::32] = 127 / 8.0
    return x


def test_activation_quantization_matches_ggml() -> None:
    x = _tie_rich(16, 512)
    codes, d = q8_codes(torch.from_numpy(x))
    for row in range(x.shape[0]):
        want, want_d = ggml.quantize_q8_0(x[row])
        assert np.array_equal(codes[row].numpy().astype(np.int32), want)
        assert np.array_equal(d[row].half().float().numpy(), want_d)
        want1, _, want_s = ggml.quantize_q8_1(x[row])
        assert np.array_equal(codes[row].numpy().astype(np.int32), want1)
        got_s = (d[row] * codes[row].sum(-1)).half().float().numpy()
        assert np.array_equal(got_s, want_s)
    xk = torch.from_numpy(x)
    deq = quantize_q8_k(xk).view(16, -1, 256)
    for row in range(x.shape[0]):
        want, want_d = ggml.quantize_q8_k(x[row])
        assert np.array_equal(deq[row].numpy(), (want * want_d[:, None]).astype(np.float32))


@pytest.mark.parametrize(("tensor", "qtype", "fn"), [
    ("blk.0.attn_v.weight", "Q4_1", "ggml_vec_dot_q4_1_q8_1"),
    ("blk.3.ffn_down.weight", "Q4_1", "ggml_vec_dot_q4_1_q8_1"),
    ("token_embd.weight", "Q8_0", "ggml_vec_dot_q8_0_q8_0"),
])  # fmt: skip
def test_block_matmul_matches_ggml_vec_dot(tensor: str, qtype: str, fn: str) -> None:
    f = GGUFFile(resolve_model(SMOLLM, progress=False).path)
    t = next(t for t in f.tensors if t.name == tensor)
    raw = np.ascontiguousarray(f.raw_rows(t)[:512])  # the first 512 output rows
    codes, d, m = (None if a is None else torch.from_numpy(a) for a in block32(raw, qtype))
    linear = GGMLBlockLinear(codes, d, m, None, qtype)
    k = t.shape[-1]
    x = (_tie_rich(3, k, seed=1) * 0.05).astype(np.float32)  # 3 activation rows at a real scale
    got = linear(torch.from_numpy(x)).numpy()
    quant = ggml.quantize_q8_1_raw if qtype == "Q4_1" else ggml.quantize_q8_0_raw
    for r in range(x.shape[0]):
        qx = quant(x[r])
        want = np.array([ggml.vec_dot(fn, raw[n], qx, k) for n in range(raw.shape[0])], dtype=np.float32)
        assert np.array_equal(got[r], want), f"row {r}: {int((got[r] != want).sum())} of {want.size} differ"


def test_norm_glu_and_rope_match_ggml() -> None:
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((8, 576)) * rng.uniform(0.01, 30, (8, 576))).astype(np.float32)
    w = rng.standard_normal(576).astype(np.float32)
    eps = float(np.float32(1e-5))
    got = ops.rms_norm(torch.from_numpy(x), torch.from_numpy(w), eps).numpy()
    assert np.array_equal(got, ggml.rms_norm_mul(x, w, eps))

    gate = (rng.standard_normal((4, 1536)) * 4).astype(np.float32)
    gate[0, :8] = [-120, -89, 89, 120, -10, 10, -9.99, 0]  # exp over/underflow and GELU table edges
    up = rng.standard_normal((4, 1536)).astype(np.float32)
    g, u = torch.from_numpy(gate), torch.from_numpy(up)
    assert np.array_equal((ops.silu(g) * u).numpy(), ggml.glu("swiglu", gate, up))
    assert np.array_equal((ops.gelu_fp16_table(g) * u).numpy(), ggml.glu("geglu", gate, up))

    q = (rng.standard_normal((40, 9, 64)) * 3).astype(np.float32)
    pos = np.arange(40) + 97
    cos, sin = ops.rope_cos_sin(torch.from_numpy(pos), 64, 100000.0)
    got = ops.apply_rope(torch.from_numpy(q), cos, sin).numpy()
    assert np.array_equal(got, ggml.rope(q, pos, neox=True, base=100000.0))
    # llama-architecture files rotate adjacent pairs (NORM mode) of rows the converter permuted
    order = (np.arange(64) // 2) + (np.arange(64) % 2) * 32
    norm = ggml.rope(q[..., order], pos, neox=False, base=100000.0)
    back = np.empty_like(norm)
    back[..., order] = norm
    assert np.array_equal(got, back)


@pytest.mark.parametrize(("t", "length", "hq", "hkv", "d"), [
    (7, 7, 9, 3, 64), (1, 60, 9, 3, 64), (13, 13, 14, 2, 64), (1, 120, 4, 1, 256), (40, 40, 9, 3, 64),
])  # fmt: skip
def test_flash_attention_matches_ggml(t: int, length: int, hq: int, hkv: int, d: int) -> None:
    rng = np.random.default_rng(t * 1000 + length)
    q = (rng.standard_normal((t, hq, d)) * 2).astype(np.float32)
    k = (rng.standard_normal((length, hkv, d)) * 2).astype(np.float16)
    v = rng.standard_normal((length, hkv, d)).astype(np.float16)
    positions = torch.arange(length - t, length)
    got = ggml_attention(torch.from_numpy(q), positions, torch.from_numpy(k), torch.from_numpy(v), 0.125)
    assert np.array_equal(got.numpy(), ggml.flash_attention(q, k, v, 0.125))


@pytest.mark.parametrize("name", [SMOLLM, "qwen2.5-coder-0.5b-instruct", "gemma-3-270m"])
def test_greedy_equals_llamacpp(name: str) -> None:
    """The issue's figure on every packaged chat model: 32 greedy tokens on the 20 prompts, same
    GGUF file, llama.cpp's own tokenizer for the prompt ids, at least 19 of 20 equal (measured:
    20/20 on each). Our 20 requests run batched together while llama.cpp runs them one by one,
    so this also holds batched output to alone output; Qwen's Q4_K/Q6_K kernels depend on the
    row count, Gemma's sliding windows make llama.cpp's server split the prompt before its
    last 4 tokens (`Scheduler.prompt_tail`)."""
    resolved = resolve_model(name, progress=False)
    with LlamaCpp(resolved.path) as ref:
        prompts = [ref.tokenize(p, add_special=True) for p in PROMPTS]
        want = [ref.greedy(ids, 32) for ids in prompts]
    llm = LLM(name, quantization="ggml", progress=False)
    outs = llm.generate([{"prompt_token_ids": p} for p in prompts], SamplingParams(temperature=0, max_tokens=32))
    differ = [i for i, (o, w) in enumerate(zip(outs, want, strict=True)) if o.outputs[0].token_ids != w]
    assert len(differ) <= 1, f"prompts {differ} differ from llama.cpp"


def test_ggml_numerics_needs_a_gguf_file(tmp_path) -> None:
    from tests.tiny_models import make_checkpoint

    make_checkpoint(tmp_path, "llama")
    with pytest.raises(ValueError, match=r"quantization=.ggml. reproduces .* on GGUF files"):
        LLM(str(tmp_path), quantization="ggml", progress=False)
