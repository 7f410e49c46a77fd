"""The batching engine on tiny random-weight models: batched = alone, sampling, stops, aborts, errors.

Every scenario ends with `check_integrity()` on the block manager and, once all requests are
done, every KV block free again.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from brainwork.engine.engine import LLMEngine
from brainwork.loader.decoder import LoadedDecoder, load_decoder
from brainwork.sampling_params import SamplingParams
from brainwork.store import resolve_model
from tests.engine_helpers import engine_for, run_all
from tests.test_decoder_parity import _logits_ours
from tests.tiny_models import VOCAB, make_checkpoint

GREEDY = SamplingParams(temperature=0, max_tokens=16, ignore_eos=True)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> LoadedDecoder:
    folder = tmp_path_factory.mktemp("tiny-llama")
    make_checkpoint(folder, "llama")
    return load_decoder(resolve_model(str(folder)), progress=False)


def _prompts(n: int, seed: int = 0, shared_prefix: int = 0) -> list[list[int]]:
    rng = random.Random(seed)
    prefix = [rng.randrange(3, VOCAB) for _ in range(shared_prefix)]
    return [prefix + [rng.randrange(3, VOCAB) for _ in range(rng.randint(1, 70))] for _ in range(n)]


def _greedy_params(n: int) -> list[SamplingParams]:
    return [SamplingParams(temperature=0, max_tokens=8 + (i * 7) % 20, ignore_eos=True) for i in range(n)]


def _done(engine: LLMEngine) -> None:
    engine.block_manager.check_integrity()
    assert not engine.has_unfinished_requests()
    assert engine.block_manager.num_free_blocks == engine.block_manager.num_blocks


def _alone(loaded: LoadedDecoder, prompts: list[list[int]], params: list[SamplingParams]) -> list[list[int]]:
    engine = engine_for(loaded, max_model_len=256, enable_prefix_caching=False)
    return [run_all(engine, [p], [sp])[0][0] for p, sp in zip(prompts, params, strict=True)]


ENGINE_SETUPS = {
    "default": {},
    "preempting": {"num_kv_blocks": 40, "block_size": 4, "max_model_len": 144},
    "chunked-prefill": {"max_num_batched_tokens": 24},
    "few-seqs": {"max_num_seqs": 3},
    "torch-attention": {},  # decode through gather + SDPA instead of the C kernel
}


@pytest.fixture(scope="module")
def mixed(tiny: LoadedDecoder) -> tuple[list[list[int]], list[SamplingParams], list[list[int]]]:
    """32 prompts of mixed length (sharing a 40-token prefix), their params, and each one's output alone."""
    prompts, params = _prompts(32, shared_prefix=40), _greedy_params(32)
    return prompts, params, _alone(tiny, prompts, params)


@pytest.mark.parametrize("setup", sorted(ENGINE_SETUPS))
def test_batched_greedy_equals_alone(tiny: LoadedDecoder, mixed, setup: str) -> None:
    """32 prompts of mixed length generated together give exactly the tokens each gives alone."""
    prompts, params, expected = mixed
    engine = engine_for(tiny, **{"max_model_len": 256, **ENGINE_SETUPS[setup]})
    if setup == "torch-attention":
        engine.cache.native = None
    got = [c[0] for c in run_all(engine, prompts, params)]
    assert got == expected
    stats = engine.get_stats()
    if setup == "preempting":
        assert stats.num_preemptions > 0
    assert stats.prefix_cache_hits > 0  # the shared 40-token prefix spans full blocks
    _done(engine)


def test_prefix_cache_reuses_computed_blocks(tiny: LoadedDecoder) -> None:
    """A second request with the same prompt computes only its last partial block."""
    prompt = _prompts(1, seed=3)[0] + list(range(10, 50))
    engine = engine_for(tiny, max_model_len=256, block_size=8)
    (first,) = run_all(engine, [prompt], GREEDY)
    (second,) = run_all(engine, [prompt], GREEDY)
    assert first == second
    stats = engine.get_stats()
    assert stats.prefix_cache_hits == (len(prompt) - 1) // 8 * 8
    _done(engine)


@pytest.mark.parametrize("arch", ["llama", "mistral", "gemma3", "gpt2"])
def test_engine_greedy_matches_transformers(arch: str, tmp_path: Path) -> None:
    """Batched paged decoding equals transformers' greedy `generate` (windows included)."""
    ref = make_checkpoint(tmp_path, arch, **({"sliding_window": 5} if arch == "mistral" else {}))
    loaded = load_decoder(resolve_model(str(tmp_path)), progress=False)
    prompts = _prompts(4, seed=5)
    got = run_all(engine_for(loaded, max_model_len=256, block_size=4), prompts, GREEDY)
    for ids, (tokens,) in zip(prompts, got, strict=True):
        with torch.inference_mode():
            out = ref.generate(torch.tensor([ids]), max_new_tokens=16, do_sample=False, eos_token_id=None)
        assert tokens == out[0, len(ids) :].tolist()


def _sampled(seed: int, i: int = 0) -> SamplingParams:
    return SamplingParams(
        temperature=0.9, top_k=40, top_p=0.9, min_p=0.02, seed=seed + i, max_tokens=20, ignore_eos=True
    )


def test_seeded_sampling_is_reproducible_and_independent_of_batch(tiny: LoadedDecoder) -> None:
    prompts = _prompts(6, seed=7)
    engine = engine_for(tiny, max_model_len=256)
    (alone,) = run_all(engine, prompts[:1], _sampled(11))
    (again,) = run_all(engine, prompts[:1], _sampled(11))
    company = [_sampled(11)] + [_sampled(100, i) for i in range(3)] + [GREEDY, GREEDY]
    crowded = run_all(engine, prompts, company)
    assert alone == again == crowded[0]
    other = run_all(engine, prompts[:1], _sampled(12))[0]
    assert other != alone  # the seed matters
    _done(engine)


def test_n_samples_share_the_prompt_and_follow_seed_plus_index(tiny: LoadedDecoder) -> None:
    prompt = _prompts(1, seed=9)[0] + list(range(20, 60))
    engine = engine_for(tiny, max_model_len=256, block_size=8)
    params = SamplingParams(n=3, temperature=1.0, seed=40, max_tokens=12, ignore_eos=True)
    (samples,) = run_all(engine, [prompt], params)
    assert len(samples) == 3 and len({tuple(s) for s in samples}) > 1
    # siblings joined after the first sample's prompt was computed and hit its blocks
    assert engine.get_stats().prefix_cache_hits >= 2 * ((len(prompt) - 1) // 8 * 8)
    for i, tokens in enumerate(samples):
        single = SamplingParams(temperature=1.0, seed=40 + i, max_tokens=12, ignore_eos=True)
        assert run_all(engine, [prompt], single)[0][0] == tokens
    _done(engine)


def _one(engine: LLMEngine, prompt: list[int], params: SamplingParams):  # -> CompletionOutput
    engine.add_request("one", prompt, params)
    text, ids, logprobs, last = "", [], [], None
    while engine.has_unfinished_requests():
        for out in engine.step():
            for c in out.outputs:
                text += c.text
                ids += c.token_ids
                logprobs += c.logprobs or []
                last = c
    assert last is not None
    last.text, last.token_ids, last.logprobs = text, ids, logprobs if last.logprobs is not None else None
    return last


def test_stop_rules(tiny: LoadedDecoder) -> None:
    engine = engine_for(tiny, max_model_len=256)
    prompt = _prompts(1, seed=13)[0]
    free = _one(engine, prompt, SamplingParams(temperature=0, max_tokens=24, ignore_eos=True))
    assert free.finish_reason == "length" and len(free.token_ids) == 24

    # a stop string ends the text before it; the string is reported as the stop reason
    words = free.text.split()
    stop = " ".join(words[4:6])
    got = _one(engine, prompt, SamplingParams(temperature=0, max_tokens=24, ignore_eos=True, stop=[stop]))
    assert (got.finish_reason, got.stop_reason) == ("stop", stop)
    assert got.text == free.text[: free.text.index(stop)]

    # a stop token id ends generation and is reported
    token = free.token_ids[5]
    got = _one(engine, prompt, SamplingParams(temperature=0, max_tokens=24, ignore_eos=True, stop_token_ids=[token]))
    assert (got.finish_reason, got.stop_reason) == ("stop", token)
    assert got.token_ids == free.token_ids[: free.token_ids.index(token) + 1]

    # EOS (forced by logit_bias) ends at once; ignore_eos goes on; min_tokens holds EOS back
    eos = tiny.tokenizer.eos_token_ids[0]
    bias = {eos: 100.0}
    assert _one(engine, prompt, SamplingParams(temperature=0, logit_bias=bias)).token_ids == [eos]
    got = _one(engine, prompt, SamplingParams(temperature=0, logit_bias=bias, ignore_eos=True, max_tokens=5))
    assert got.token_ids == [eos] * 5 and got.finish_reason == "length"
    got = _one(engine, prompt, SamplingParams(temperature=0, logit_bias=bias, min_tokens=3))
    assert len(got.token_ids) == 4 and got.token_ids[-1] == eos and eos not in got.token_ids[:3]
    _done(engine)


def test_logprobs_are_the_raw_model_logprobs(tiny: LoadedDecoder) -> None:
    engine = engine_for(tiny, max_model_len=256)
    prompt = _prompts(1, seed=17)[0]
    got = _one(engine, prompt, SamplingParams(temperature=0, max_tokens=6, ignore_eos=True, logprobs=3))
    ids = prompt + got.token_ids
    reference = torch.log_softmax(_logits_ours(tiny, ids, [len(ids)]), -1)[len(prompt) - 1 : -1]  # (6, V)
    assert got.logprobs is not None and len(got.logprobs) == 6
    total = 0.0
    for row, token, entry in zip(reference, got.token_ids, got.logprobs, strict=True):
        assert entry[token].rank == 1  # greedy picks the most likely
        assert abs(entry[token].logprob - row[token].item()) < 1e-4
        top = sorted(entry.items(), key=lambda kv: -kv[1].logprob)
        assert [t for t, _ in top] == torch.topk(row, 3).indices.tolist()
        total += entry[token].logprob
    assert got.cumulative_logprob == pytest.approx(total, abs=1e-4)
    _done(engine)


def test_a_failing_request_fails_alone(tiny: LoadedDecoder) -> None:
    """A user's logits processor raises after 3 tokens: that request errors, the others finish."""

    def explode(output_ids: list[int], logits: torch.Tensor) -> torch.Tensor:
        if len(output_ids) >= 3:
            raise RuntimeError("boom")
        return logits

    prompts, params = _prompts(3, seed=19), _greedy_params(3)
    expected = _alone(tiny, prompts, params)
    engine = engine_for(tiny, max_model_len=256)
    bad = SamplingParams(temperature=0, max_tokens=10, logits_processors=[explode])
    for i, (p, sp) in enumerate(zip([prompts[0], *prompts], [bad, *params], strict=True)):
        engine.add_request(str(i), p, sp)
    results: dict[str, list[int]] = {}
    errors: dict[str, str | None] = {}
    while engine.has_unfinished_requests():
        for out in engine.step():
            results.setdefault(out.request_id, []).extend(t for c in out.outputs for t in c.token_ids)
            if out.finished:
                errors[out.request_id] = out.error
    assert errors["0"] is not None and "boom" in errors["0"]
    assert len(results["0"]) == 3
    assert [results[str(i + 1)] for i in range(3)] == expected
    assert not any(errors[str(i + 1)] for i in range(3))
    assert engine.get_stats().finished["error"] == 1
    _done(engine)


@pytest.mark.parametrize("when", ["mid-prefill", "mid-decode", "waiting"])
def test_abort_frees_blocks_at_once(tiny: LoadedDecoder, when: str) -> None:
    engine = engine_for(tiny, max_model_len=256, max_num_batched_tokens=16, block_size=4, max_num_seqs=2)
    prompts = _prompts(3, seed=23)
    prompts[0] = prompts[0] + list(range(3, 60))  # long enough to need several prefill chunks
    for i, p in enumerate(prompts):
        engine.add_request(str(i), p, SamplingParams(temperature=0, max_tokens=30, ignore_eos=True))
    engine.step()
    target = "2" if when == "waiting" else "0"
    if when == "mid-decode":
        while engine.scheduler.running[0].num_output_tokens < 2:
            engine.step()
    held = len(engine.block_manager.tables.get(engine._requests[target].samples[0].seq.seq_id, []))
    free_before = engine.block_manager.num_free_blocks
    final = engine.abort_request(target)
    assert final is not None and final.finished and final.outputs[0].finish_reason == "abort"
    assert engine.block_manager.num_free_blocks == free_before + held
    engine.block_manager.check_integrity()
    while engine.has_unfinished_requests():
        assert all(o.request_id != target for o in engine.step())
    _done(engine)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"temperature": -0.5}, "temperature"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"n": 0}, "n"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"logprobs": 21}, "logprobs"),
        ({"top_k": 0}, "top_k"),
        ({"min_p": 2.0}, "min_p"),
    ],
)
def test_invalid_sampling_values_name_the_field(params: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        SamplingParams(**params)


def test_bad_requests_are_refused_before_any_work(tiny: LoadedDecoder) -> None:
    engine = engine_for(tiny, max_model_len=64)
    with pytest.raises(ValueError, match=r"prompt: 80 tokens .* context window of 64"):
        engine.add_request("a", [5] * 80, GREEDY)
    with pytest.raises(ValueError, match="prompt: empty"):
        engine.add_request("b", [], GREEDY)
    with pytest.raises(ValueError, match="logit_bias"):
        engine.add_request("c", [5, 6], SamplingParams(logit_bias={VOCAB + 5: 1.0}))
    with pytest.raises(ValueError, match="prompt: token ids"):
        engine.add_request("d", [5, VOCAB + 1], GREEDY)
    engine.add_request("e", [5, 6], GREEDY)
    with pytest.raises(ValueError, match="already running"):
        engine.add_request("e", [5, 6], GREEDY)
    while engine.has_unfinished_requests():
        engine.step()
    _done(engine)


def test_stats_count_tokens_and_latencies(tiny: LoadedDecoder) -> None:
    engine = engine_for(tiny, max_model_len=256, enable_prefix_caching=False)
    prompts, params = _prompts(5, seed=29), _greedy_params(5)
    run_all(engine, prompts, params)
    stats = engine.get_stats()
    assert stats.prompt_tokens == sum(map(len, prompts))
    assert stats.generation_tokens == sum(p.max_tokens or 0 for p in params)
    assert stats.finished["length"] == 5 and stats.steps > 0
    seen = engine.stats.drain()
    assert len(seen.time_to_first_token) == 5 and len(seen.e2e_latency) == 5
    assert len(seen.inter_token_latency) == stats.generation_tokens - 5
    assert all(t >= 0 for t in seen.inter_token_latency)
    _done(engine)
