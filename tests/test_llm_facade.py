"""The `LLM` facade over the engine: batched generate, streams of deltas, priorities, bad input."""

from __future__ import annotations

import pytest

from brainwork.llm import LLM
from brainwork.sampling_params import SamplingParams
from tests.tiny_models import make_checkpoint

P = SamplingParams(temperature=0, max_tokens=10, ignore_eos=True)


@pytest.fixture(scope="module")
def llm(tmp_path_factory: pytest.TempPathFactory) -> LLM:
    folder = tmp_path_factory.mktemp("tiny-llama-llm")
    make_checkpoint(folder, "llama")
    return LLM(str(folder), progress=False, max_model_len=128, kv_cache_gib=0.01)


def test_stream_deltas_join_into_what_generate_returns(llm: LLM) -> None:
    prompts = ["w5 w6 w7", "w9 w10", "w1 w2 w3 w4 w5 w6"]
    done = llm.generate(prompts, P)
    text: dict[str, str] = {}
    ids: dict[str, list[int]] = {}
    finished = []
    for delta in llm.stream(prompts, P):
        for c in delta.outputs:
            text[delta.request_id] = text.get(delta.request_id, "") + c.text
            ids.setdefault(delta.request_id, []).extend(c.token_ids)
        if delta.finished:
            finished.append(delta.request_id)
    order = sorted(text, key=int)
    assert [text[r] for r in order] == [o.outputs[0].text for o in done]
    assert [ids[r] for r in order] == [o.outputs[0].token_ids for o in done]
    assert sorted(finished, key=int) == order


def test_leaving_a_stream_early_frees_the_engine(llm: LLM) -> None:
    for n, _ in enumerate(llm.stream("w3 w4", SamplingParams(temperature=0, max_tokens=50, ignore_eos=True))):
        if n == 2:
            break
    assert not llm.engine.has_unfinished_requests()
    assert llm.engine.block_manager.num_free_blocks == llm.engine.block_manager.num_blocks
    assert llm.generate("w3 w4", P)[0].outputs[0].finish_reason == "length"


def test_priority_and_its_validation(llm: LLM) -> None:
    outs = llm.generate(["w1", "w2"], P, priority=[1, 0])
    assert [len(o.outputs[0].token_ids) for o in outs] == [10, 10]
    with pytest.raises(ValueError, match="priority"):
        llm.generate(["w1", "w2"], P, priority=[0])


def test_one_bad_prompt_refuses_the_whole_call_and_names_it(llm: LLM) -> None:
    with pytest.raises(ValueError, match=r"prompts\[1\]: prompt: 200 tokens .* context window of 128"):
        llm.generate(["w1", {"prompt_token_ids": [4] * 200}], P)
    assert not llm.engine.has_unfinished_requests()


def test_unknown_engine_argument_is_named(tmp_path) -> None:
    with pytest.raises(ValueError, match="max_num_sequences"):
        LLM(str(tmp_path), max_num_sequences=3)
