"""Running the real engine over already-loaded models in tests."""

from __future__ import annotations

from typing import Any

from brainwork.config import EngineConfig
from brainwork.engine.engine import LLMEngine
from brainwork.loader.decoder import LoadedDecoder
from brainwork.sampling_params import SamplingParams


def engine_for(loaded: LoadedDecoder, **config: Any) -> LLMEngine:
    return LLMEngine(loaded.model, loaded.config, loaded.tokenizer, EngineConfig(**config))


def run_all(engine: LLMEngine, prompts: list[list[int]], params: SamplingParams | list[SamplingParams]) -> list[Any]:
    """Generate all prompts together; returns, per prompt, the list of its completions' token ids."""
    plist = params if isinstance(params, list) else [params] * len(prompts)
    base = engine.num_requests + id(prompts)
    rids = [f"{base}-{i}" for i in range(len(prompts))]
    for rid, ids, p in zip(rids, prompts, plist, strict=True):
        engine.add_request(rid, ids, p)
    got: dict[str, dict[int, list[int]]] = {rid: {} for rid in rids}
    while engine.has_unfinished_requests():
        for out in engine.step():
            for c in out.outputs:
                got[out.request_id].setdefault(c.index, []).extend(c.token_ids)
    return [[got[rid][i] for i in sorted(got[rid])] for rid in rids]
