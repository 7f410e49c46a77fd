"""The batching engine on a real packaged model (SmolLM2-135M): batched = alone, with preemption."""

from __future__ import annotations

import pytest

from brainwork.loader.decoder import LoadedDecoder, load_decoder
from brainwork.sampling_params import SamplingParams
from brainwork.store import resolve_model
from tests.engine_helpers import engine_for, run_all
from tests.prompts import PROMPTS


@pytest.fixture(scope="module")
def smollm2() -> LoadedDecoder:
    return load_decoder(resolve_model("smollm2-135m-instruct", progress=False), progress=False)


@pytest.fixture(scope="module")
def workload(smollm2: LoadedDecoder) -> tuple[list[list[int]], list[SamplingParams], list[list[int]]]:
    """32 prompts of mixed length (the 20 prompts, 12 of them doubled up) and each one's tokens alone."""
    texts = PROMPTS + [f"{a} {b}" for a, b in zip(PROMPTS[:12], PROMPTS[8:20], strict=True)]
    prompts = [smollm2.tokenizer.encode(t) for t in texts]
    params = [SamplingParams(temperature=0, max_tokens=12 + i % 9, ignore_eos=True) for i in range(32)]
    alone_engine = engine_for(smollm2, max_model_len=512, enable_prefix_caching=False)
    alone = [run_all(alone_engine, [p], [sp])[0][0] for p, sp in zip(prompts, params, strict=True)]
    return prompts, params, alone


@pytest.mark.parametrize(
    "setup",
    [
        {},
        {"num_kv_blocks": 14, "block_size": 16, "max_model_len": 128},  # 224 tokens for 32 sequences
        {"max_num_batched_tokens": 32},
    ],
    ids=["default", "preempting", "chunked-prefill"],
)
def test_32_prompts_together_equal_each_alone(smollm2: LoadedDecoder, workload, setup: dict) -> None:
    prompts, params, alone = workload
    engine = engine_for(smollm2, **{"max_model_len": 512, **setup})
    got = [c[0] for c in run_all(engine, prompts, params)]
    assert got == alone
    if "num_kv_blocks" in setup:
        assert engine.get_stats().num_preemptions > 0
    engine.block_manager.check_integrity()
    assert engine.block_manager.num_free_blocks == engine.block_manager.num_blocks
