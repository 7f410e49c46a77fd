"""Prompt logprobs (vLLM's `prompt_logprobs`): each prompt token's logprob given what precedes it.

Checked against the model's own logits over the whole sequence (one forward, 1e-4), in batches
with chunked prefill and with preemption; and `prompt_logprobs_start`, which lets the prefix cache
serve a shared passage while the continuation after it is still scored.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from brainwork.engine.engine import LLMEngine
from brainwork.llm import LLM
from brainwork.loader.decoder import LoadedDecoder, load_decoder
from brainwork.outputs import RequestOutput
from brainwork.sampling_params import SamplingParams
from brainwork.store import resolve_model
from tests.engine_helpers import engine_for
from tests.test_decoder_parity import _logits_ours
from tests.tiny_models import VOCAB, make_checkpoint

TOL = 1e-4


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> LoadedDecoder:
    folder = tmp_path_factory.mktemp("tiny-llama-plp")
    make_checkpoint(folder, "llama")
    return load_decoder(resolve_model(str(folder)), progress=False)


def _reference(loaded: LoadedDecoder, ids: list[int]) -> torch.Tensor:
    """(L - 1, V): row i is the log-distribution of token i + 1 given tokens 0..i."""
    return torch.log_softmax(_logits_ours(loaded, ids, [len(ids)]), -1)[:-1]


def _finals(engine: LLMEngine, prompts: list[list[int]], params: list[SamplingParams]) -> list[RequestOutput]:
    """Run the prompts together; the output that carried each request's prompt logprobs."""
    for i, (p, sp) in enumerate(zip(prompts, params, strict=True)):
        engine.add_request(str(i), p, sp)
    got: dict[str, RequestOutput] = {}
    while engine.has_unfinished_requests():
        for out in engine.step():
            if out.prompt_logprobs is not None:
                assert out.request_id not in got, "prompt logprobs are sent once"
                got[out.request_id] = out
    engine.block_manager.check_integrity()
    assert engine.block_manager.num_free_blocks == engine.block_manager.num_blocks
    return [got[str(i)] for i in range(len(prompts))]


def _check(loaded: LoadedDecoder, out: RequestOutput, start: int, k: int) -> None:
    ids = out.prompt_token_ids
    ref = _reference(loaded, ids)
    plp = out.prompt_logprobs
    assert plp is not None and len(plp) == len(ids)
    assert all(e is None for e in plp[:start])
    for pos in range(start, len(ids)):
        entry, row, token = plp[pos], ref[pos - 1], ids[pos]
        assert entry is not None and token in entry
        assert abs(entry[token].logprob - row[token].item()) < TOL
        assert entry[token].rank == int((row > row[token]).sum()) + 1
        others = sorted((t for t in entry if t != token), key=lambda t: -entry[t].logprob)
        top = [t for t in torch.topk(row, k).indices.tolist() if t != token]
        assert others == top[: len(others)] and len(entry) in (k, k + 1)


SETUPS = {
    "default": {},
    "chunked-prefill": {"max_num_batched_tokens": 24},  # a prompt's rows come in several steps
    "preempting": {"num_kv_blocks": 30, "block_size": 4, "max_model_len": 112},  # recomputed rows
}


@pytest.mark.parametrize("setup", sorted(SETUPS))
def test_every_prompt_position_gets_the_model_logprob(tiny: LoadedDecoder, setup: str) -> None:
    rng = random.Random(3)
    prompts = [[rng.randrange(3, VOCAB) for _ in range(rng.randint(2, 60))] for _ in range(12)]
    params = [SamplingParams(temperature=0, max_tokens=30, ignore_eos=True, prompt_logprobs=i % 3) for i in range(12)]
    engine = engine_for(tiny, **SETUPS[setup])
    outs = _finals(engine, prompts, params)
    if setup == "preempting":
        assert engine.scheduler.num_preemptions > 0
    for out, p in zip(outs, params, strict=True):
        _check(tiny, out, 1, p.prompt_logprobs or 0)


def test_start_lets_the_prefix_cache_serve_the_shared_passage(tiny: LoadedDecoder) -> None:
    """Continuations of one 40-token passage: only the first computes it; all are scored alike."""
    rng = random.Random(5)
    passage = [rng.randrange(3, VOCAB) for _ in range(40)]
    # the first tail is long: cached whole, its prompt would reach 48 tokens from the cache, past the start
    tails = [[rng.randrange(3, VOCAB) for _ in range(n)] for n in (20, 3, 9, 1)]
    prompts = [passage + t for t in tails] + [passage + tails[0]]  # the last repeats the first exactly
    params = [SamplingParams(temperature=0, max_tokens=1, prompt_logprobs=0, prompt_logprobs_start=40)] * 5
    cached = engine_for(tiny, block_size=16)
    first = _finals(cached, prompts[:1], params[:1])
    rest = _finals(cached, prompts[1:], params[1:])
    fresh = _finals(engine_for(tiny, block_size=16, enable_prefix_caching=False), prompts, params)
    # 39 rows may be served (row 39 predicts the first scored token): two whole blocks of 16
    assert [o.metrics.num_cached_tokens for o in first + rest] == [0, 32, 32, 32, 32]
    for out, ref in zip(first + rest, fresh, strict=True):
        _check(tiny, out, 40, 0)
        got, want = out.prompt_logprobs, ref.prompt_logprobs
        assert got is not None and want is not None
        for g, w in zip(got[40:], want[40:], strict=True):  # same tokens and ranks; values to rounding
            assert g is not None and w is not None and g.keys() == w.keys()
            assert all(g[t].rank == w[t].rank and abs(g[t].logprob - w[t].logprob) < 1e-5 for t in g)


def test_the_facade_returns_prompt_logprobs_once_with_n_samples(tmp_path: Path) -> None:
    make_checkpoint(tmp_path, "llama")
    llm = LLM(str(tmp_path), progress=False, max_model_len=128, kv_cache_gib=0.01)
    params = SamplingParams(n=2, temperature=1.0, seed=1, max_tokens=5, ignore_eos=True, prompt_logprobs=1)
    (out,) = llm.generate(["w5 w6 w7 w8 w9"], params)
    assert len(out.outputs) == 2 and all(len(c.token_ids) == 5 for c in out.outputs)
    plp = out.prompt_logprobs
    assert plp is not None and plp[0] is None and len(plp) == len(out.prompt_token_ids)
    ref = torch.log_softmax(_logits_ours(llm, out.prompt_token_ids, [len(out.prompt_token_ids)]), -1)
    for pos in range(1, len(plp)):
        token = out.prompt_token_ids[pos]
        assert abs(plp[pos][token].logprob - ref[pos - 1, token].item()) < TOL
    (plain,) = llm.generate(["w5 w6 w7 w8 w9"], SamplingParams(max_tokens=2))
    assert plain.prompt_logprobs is None


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"prompt_logprobs": 21}, "prompt_logprobs"),
        ({"prompt_logprobs": -1}, "prompt_logprobs"),
        ({"prompt_logprobs_start": 0}, "prompt_logprobs_start"),
    ],
)
def test_invalid_values_name_the_field(params: dict, field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field} "):
        SamplingParams(**params)


def test_a_prompt_with_nothing_to_score_gets_none_everywhere(tiny: LoadedDecoder) -> None:
    """As vLLM: a one-token prompt (or a start past the prompt) scores nothing, and that is no error."""
    engine = engine_for(tiny)
    params = [
        SamplingParams(max_tokens=2, prompt_logprobs=0),
        SamplingParams(max_tokens=2, prompt_logprobs=0, prompt_logprobs_start=9),
    ]
    one, past = _finals(engine, [[7], [3, 4, 5]], params)
    assert one.prompt_logprobs == [None] and past.prompt_logprobs == [None, None, None]
