"""The server under load: 32 concurrent streams each get their own request's text, a client that
hangs up stops its work within a second, a full queue answers 429, loading answers 503."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time

import httpx
import openai
import pytest

from tests.prompts import PROMPTS
from tests.server_helpers import Server, serve, wait_healthy

CHAT = "smollm2-135m-instruct"


@pytest.fixture(scope="module")
def server() -> Server:
    with serve("--embedding-model", "none", "--max-model-len", "512") as s:
        yield s


def _messages(i: int) -> list[dict]:
    texts = PROMPTS + [f"{a} {b}" for a, b in zip(PROMPTS[:12], PROMPTS[8:20], strict=True)]
    return [{"role": "user", "content": texts[i]}]


async def _stream_one(client: openai.AsyncOpenAI, i: int, max_tokens: int) -> tuple[str, str, list[str]]:
    stream = await client.chat.completions.create(
        model=CHAT, messages=_messages(i), max_tokens=max_tokens, temperature=0, stream=True
    )
    text, finish, ids = "", "", []
    async for chunk in stream:
        ids.append(chunk.id)
        for c in chunk.choices:
            assert c.index == 0
            text += c.delta.content or ""
            finish = c.finish_reason or finish
    return text, finish, ids


def test_32_concurrent_streams_each_get_their_own_text(server: Server) -> None:
    async def run() -> tuple[list, list]:
        client = openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0, timeout=300)
        alone = [await _stream_one(client, i, 24) for i in range(32)]  # one at a time
        together = await asyncio.gather(*(_stream_one(client, i, 24) for i in range(32)))
        await client.close()
        return alone, list(together)

    alone, together = asyncio.run(run())
    for i, ((text_a, finish_a, _), (text_t, finish_t, ids)) in enumerate(zip(alone, together, strict=True)):
        assert text_t == text_a, f"stream {i}: batched text differs from the request alone"
        assert finish_t == finish_a and finish_t in ("stop", "length")
        assert len(set(ids)) == 1  # every chunk of a stream carries that stream's id: nothing crossed
    assert len({ids[0] for _, _, ids in together}) == 32


def _wait_idle(server: Server, idle_kv: float, deadline_s: float) -> float:
    """Seconds until the engine has no request and the KV usage is back to `idle_kv`."""
    start = time.monotonic()
    while time.monotonic() - start < deadline_s:
        m = server.metrics()
        running = m["brainwork_num_requests_running"] + m["brainwork_num_requests_waiting"]
        if (
            running == 0
            and m["brainwork_kv_cache_usage_perc"] <= idle_kv
            and m["brainwork_server_requests_active"] == 0
        ):
            return time.monotonic() - start
        time.sleep(0.02)
    raise AssertionError(f"still busy after {deadline_s} s: {server.metrics()}")


def _busy(server: Server) -> bool:
    m = server.metrics()
    return m["brainwork_num_requests_running"] > 0 and m["brainwork_kv_cache_usage_perc"] > 0


def test_streaming_client_hangup_frees_the_request_within_a_second(server: Server) -> None:
    _wait_idle(server, 0.0, 30)
    aborted = server.metrics().get("brainwork_request_success_total:abort", 0)
    body = {"model": CHAT, "messages": _messages(1), "max_tokens": 400, "stream": True, "ignore_eos": True}
    with httpx.Client(timeout=60) as http, http.stream("POST", f"{server.url}/v1/chat/completions", json=body) as r:
        lines = r.iter_lines()
        for _ in range(6):  # a few chunks arrive: it is running
            next(lines)
        assert _busy(server)
    # leaving the block closed the connection mid-stream
    assert _wait_idle(server, 0.0, 5.0) < 1.0
    assert server.metrics()["brainwork_request_success_total:abort"] == aborted + 1


def test_non_streaming_client_hangup_frees_the_request_within_a_second(server: Server) -> None:
    _wait_idle(server, 0.0, 30)
    body = {"model": CHAT, "messages": _messages(2), "max_tokens": 400, "ignore_eos": True}
    seen_busy = threading.Event()

    def watch() -> None:
        for _ in range(200):
            if _busy(server):
                seen_busy.set()
                return
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=httpx.Timeout(60, read=1.5))
    watcher.join()
    assert seen_busy.is_set()
    assert _wait_idle(server, 0.0, 5.0) < 1.0


def test_full_queue_is_429_with_retry_after_and_loading_is_503() -> None:
    with serve("--embedding-model", "none", "--max-concurrent", "1", "--max-queue", "1", wait=False) as s:
        # the port opens before the model is loaded: /health and the API say 503 meanwhile
        statuses = []
        for _ in range(600):
            with contextlib.suppress(httpx.HTTPError):
                statuses.append(httpx.get(f"{s.url}/health", timeout=2).status_code)
                if statuses[-1] == 503:
                    r = httpx.post(f"{s.url}/v1/completions", json={"prompt": "hi"}, timeout=5)
                    if r.status_code == 503:  # still loading (it may have just finished)
                        assert r.json()["error"]["code"] == "model_loading" and "Retry-After" in r.headers
                if statuses[-1] == 200:
                    break
            time.sleep(0.05)
        assert statuses[0] == 503 and statuses[-1] == 200
        wait_healthy(s, 60)

        client = openai.OpenAI(base_url=f"{s.url}/v1", api_key="x", max_retries=0, timeout=120)
        long = {"model": CHAT, "prompt": "Once upon a time", "max_tokens": 300, "extra_body": {"ignore_eos": True}}
        first = client.completions.create(stream=True, **long)
        next(iter(first))  # running: holds the one slot
        results: list = []
        second = threading.Thread(target=lambda: results.append(client.completions.create(**{**long, "max_tokens": 2})))
        second.start()
        deadline = time.monotonic() + 10
        while s.metrics()["brainwork_server_requests_queued"] < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        with pytest.raises(openai.RateLimitError) as e:
            client.completions.create(**long)
        assert e.value.response.headers["Retry-After"] == "1"
        assert e.value.body["code"] == "server_busy"
        first.close()  # hang up: the queued request gets the slot
        second.join(60)
        assert results and results[0].choices[0].finish_reason == "length"
        assert s.metrics()["brainwork_server_requests_rejected_total"] == 1
