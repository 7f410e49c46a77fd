"""The engine loop on its own thread, driven from asyncio as the server will drive it."""

from __future__ import annotations

import asyncio

import pytest

from brainwork.engine.async_engine import AsyncLLMEngine, EngineDeadError
from brainwork.loader.decoder import LoadedDecoder, load_decoder
from brainwork.sampling_params import SamplingParams
from brainwork.store import resolve_model
from tests.engine_helpers import engine_for, run_all
from tests.tiny_models import make_checkpoint


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> LoadedDecoder:
    folder = tmp_path_factory.mktemp("tiny-llama-async")
    make_checkpoint(folder, "llama")
    return load_decoder(resolve_model(str(folder)), progress=False)


def _params(n: int) -> SamplingParams:
    return SamplingParams(temperature=0, max_tokens=n, ignore_eos=True)


async def _collect(engine: AsyncLLMEngine, prompt: list[int], params: SamplingParams) -> tuple[list[int], str | None]:
    ids: list[int] = []
    error = None
    async for out in engine.generate(prompt, params):
        ids += [t for c in out.outputs for t in c.token_ids]
        error = out.error
    return ids, error


def test_concurrent_requests_match_the_sync_engine(tiny: LoadedDecoder) -> None:
    prompts = [[5, 6, 7], list(range(10, 40)), [99] * 17, list(range(3, 90, 2))]
    expected = [c[0] for c in run_all(engine_for(tiny, max_model_len=256), prompts, _params(12))]
    engine = AsyncLLMEngine(engine_for(tiny, max_model_len=256))
    engine.start()

    async def main() -> list[tuple[list[int], str | None]]:
        return await asyncio.gather(*(_collect(engine, p, _params(12)) for p in prompts))

    try:
        got = asyncio.run(main())
    finally:
        engine.shutdown()
    assert [ids for ids, _ in got] == expected
    assert not engine.running


def test_join_abort_and_errors_while_the_loop_runs(tiny: LoadedDecoder) -> None:
    sync = engine_for(tiny, max_model_len=512)
    engine = AsyncLLMEngine(sync)
    engine.start()

    def explode(output_ids: list[int], logits):
        if len(output_ids) >= 2:
            raise ValueError("bad processor")
        return logits

    async def main() -> dict[str, object]:
        results: dict[str, object] = {}
        finished_order: list[str] = []

        async def long() -> None:
            results["long"] = await _collect(engine, list(range(3, 50)), _params(150))
            finished_order.append("long")

        async def quitter() -> None:
            seen = 0
            async for _ in engine.generate(list(range(60, 80)), _params(300)):
                seen += 1
                if seen == 3:
                    break  # the client hung up: the engine must abort and free the blocks
            results["quitter"] = seen

        async def joiner() -> None:
            await asyncio.sleep(0.05)  # arrives while the long request decodes
            results["joiner"] = await _collect(engine, [7, 8, 9], _params(5))
            finished_order.append("joiner")

        async def failing() -> None:
            results["failing"] = await _collect(
                engine, [11, 12], SamplingParams(temperature=0, max_tokens=20, logits_processors=[explode])
            )

        with pytest.raises(ValueError, match="prompt: empty"):
            async for _ in engine.generate([], _params(3)):
                pass
        await asyncio.gather(long(), quitter(), joiner(), failing())
        results["order"] = finished_order
        return results

    try:
        results = asyncio.run(main())
        stats = engine.get_stats()
    finally:
        engine.shutdown()
    assert results["order"] == ["joiner", "long"]  # the short late request did not wait for the long one
    assert len(results["long"][0]) == 150 and results["long"][1] is None
    assert results["quitter"] == 3
    failing_ids, failing_error = results["failing"]
    assert len(failing_ids) == 2 and "bad processor" in failing_error
    assert stats.finished["abort"] == 1 and stats.finished["error"] == 1
    assert not sync.has_unfinished_requests()
    sync.block_manager.check_integrity()
    assert sync.block_manager.num_free_blocks == sync.block_manager.num_blocks


def test_generate_on_a_stopped_engine_is_a_clear_error(tiny: LoadedDecoder) -> None:
    engine = AsyncLLMEngine(engine_for(tiny, max_model_len=64))

    async def main() -> None:
        async for _ in engine.generate([1, 2], _params(2)):
            pass

    with pytest.raises(EngineDeadError, match="not running"):
        asyncio.run(main())
