"""The official `openai` client, unchanged, against a real `brainwork serve` process (SmolLM2 and
MiniLM on a free port): every route, streaming, errors, and agreement with the in-process API."""

from __future__ import annotations

import base64
import json

import httpx
import numpy as np
import openai
import pytest

from brainwork import LLM, SamplingParams
from tests.server_helpers import Server, serve

CHAT = "smollm2-135m-instruct"
EMBED = "all-minilm-l6-v2"
KEY = "sk-test-123"
WINDOW = 512
BODY_LIMIT_MB = 0.25


@pytest.fixture(scope="module")
def server() -> Server:
    args = ["--api-key", KEY, "--max-model-len", str(WINDOW), "--max-body-mb", str(BODY_LIMIT_MB)]
    with serve(*args) as s:
        yield s


@pytest.fixture(scope="module")
def client(server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def local_llm(smollm2_gguf) -> LLM:
    return LLM(str(smollm2_gguf), max_model_len=WINDOW, progress=False)


def _chat(content: str) -> list[dict]:
    return [{"role": "user", "content": content}]


# ---- routes ------------------------------------------------------------------------------------
def test_models_health_version_openapi(server: Server, client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list().data]
    assert ids == [CHAT, EMBED]
    assert client.models.retrieve(CHAT).id == CHAT
    assert httpx.get(f"{server.url}/health").status_code == 200
    assert httpx.get(f"{server.url}/version").json()["version"]
    paths = httpx.get(f"{server.url}/openapi.json").json()["paths"]
    for route in (
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
        "/v1/models",
        "/health",
        "/version",
        "/tokenize",
        "/detokenize",
        "/metrics",
    ):
        assert route in paths, route


def test_chat_matches_in_process_greedy(client: openai.OpenAI, local_llm: LLM) -> None:
    messages = _chat("What is the capital of France? Answer in one sentence.")
    r = client.chat.completions.create(model=CHAT, messages=messages, max_tokens=24, temperature=0)
    ref = local_llm.chat(messages, SamplingParams(temperature=0, max_tokens=24))[0].outputs[0]
    choice = r.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == ref.text
    assert choice.finish_reason == ("length" if ref.finish_reason == "length" else "stop")
    assert r.usage.completion_tokens == len(ref.token_ids)
    assert r.usage.prompt_tokens == len(local_llm.encode_chat(messages))
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-") and r.model == CHAT


def test_chat_list_of_parts_content_equals_string(client: openai.OpenAI) -> None:
    text = "Name a colour."
    a = client.chat.completions.create(model=CHAT, messages=_chat(text), max_tokens=8, temperature=0)
    parts = [{"role": "user", "content": [{"type": "text", "text": text}]}]
    b = client.chat.completions.create(model=CHAT, messages=parts, max_tokens=8, temperature=0)
    assert a.choices[0].message.content == b.choices[0].message.content


def test_chat_stream_with_usage(server: Server, client: openai.OpenAI) -> None:
    messages = _chat("Write a haiku about the sea.")
    whole = client.chat.completions.create(model=CHAT, messages=messages, max_tokens=20, temperature=0)
    stream = client.chat.completions.create(
        model=CHAT, messages=messages, max_tokens=20, temperature=0, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals == [whole.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == whole.usage.total_tokens
    # the raw wire format: SSE data lines, [DONE] last
    body = {"model": CHAT, "messages": messages, "max_tokens": 4, "stream": True}
    raw = httpx.post(f"{server.url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"})
    assert raw.headers["content-type"].startswith("text/event-stream")
    events = [line for line in raw.text.split("\n\n") if line]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    assert json.loads(events[0][6:])["choices"][0]["delta"] == {"role": "assistant", "content": ""}


def test_completions_prompt_forms(client: openai.OpenAI, local_llm: LLM) -> None:
    prompt = "The capital of France is"
    r = client.completions.create(model=CHAT, prompt=prompt, max_tokens=10, temperature=0)
    ref = local_llm.generate(prompt, SamplingParams(temperature=0, max_tokens=10))[0].outputs[0].text
    assert r.object == "text_completion" and r.choices[0].text == ref
    ids = local_llm.tokenizer.encode(prompt)
    by_ids = client.completions.create(model=CHAT, prompt=ids, max_tokens=10, temperature=0)
    assert by_ids.choices[0].text == ref
    many = client.completions.create(model=CHAT, prompt=[prompt, "Water boils at"], max_tokens=10, temperature=0)
    assert [c.index for c in many.choices] == [0, 1] and many.choices[0].text == ref
    echo = client.completions.create(model=CHAT, prompt=prompt, max_tokens=10, temperature=0, echo=True)
    assert echo.choices[0].text == prompt + ref
    streamed = client.completions.create(model=CHAT, prompt=prompt, max_tokens=10, temperature=0, stream=True)
    assert "".join(c.choices[0].text for c in streamed if c.choices) == ref


def test_n2_choices(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model=CHAT, messages=_chat("Tell me a fun fact."), max_tokens=16, n=2, temperature=1.0, seed=7
    )
    assert [c.index for c in r.choices] == [0, 1]
    assert 2 <= r.usage.completion_tokens <= 32
    assert r.choices[0].message.content != r.choices[1].message.content  # seeds 7 and 8 differ over 16 tokens
    stream = client.chat.completions.create(
        model=CHAT, messages=_chat("Tell me a fun fact."), max_tokens=16, n=2, temperature=1.0, seed=7, stream=True
    )
    texts = ["", ""]
    for c in stream:
        for ch in c.choices:
            texts[ch.index] += ch.delta.content or ""
    assert texts == [c.message.content for c in r.choices]  # streamed and whole agree per choice


def test_seed_reproducibility(client: openai.OpenAI) -> None:
    kw = {"model": CHAT, "messages": _chat("Invent a name for a cat."), "max_tokens": 24, "temperature": 1.0}
    a = client.chat.completions.create(seed=1234, **kw).choices[0].message.content
    b = client.chat.completions.create(seed=1234, **kw).choices[0].message.content
    c = client.chat.completions.create(seed=99, **kw).choices[0].message.content
    assert a == b
    assert a != c


def test_chat_logprobs(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model=CHAT, messages=_chat("Count: one, two,"), max_tokens=6, temperature=0, logprobs=True, top_logprobs=3
    )
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens
    for tok in content:
        assert len(tok.top_logprobs) == 3
        lps = [t.logprob for t in tok.top_logprobs]
        assert lps == sorted(lps, reverse=True) and all(lp <= 0 for lp in lps)
        assert tok.token == tok.top_logprobs[0].token and tok.logprob == pytest.approx(lps[0])  # greedy
        assert bytes(tok.bytes).decode("utf-8") == tok.token
    assert "".join(t.token for t in content) == r.choices[0].message.content


def test_echo_with_logprobs_scores_the_prompt(client: openai.OpenAI, local_llm: LLM) -> None:
    """Legacy `echo` + `logprobs`: the prompt's tokens lead the logprobs (the first one null), as
    the in-process engine's `prompt_logprobs` gives them; whole and streamed agree."""
    prompt = "The quick brown fox jumps over the lazy dog"
    kw = {"model": CHAT, "prompt": prompt, "max_tokens": 3, "temperature": 0, "echo": True, "logprobs": 2}
    r = client.completions.create(**kw)
    ids = local_llm.tokenizer.encode(prompt)
    (ref,) = local_llm.generate(prompt, SamplingParams(temperature=0, max_tokens=3, prompt_logprobs=2))
    lp = r.choices[0].logprobs
    n = len(ids)
    assert len(lp.tokens) == n + 3 and r.choices[0].text.startswith(prompt)
    assert "".join(lp.tokens) == r.choices[0].text
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    for pos in range(1, n):
        assert lp.token_logprobs[pos] == pytest.approx(ref.prompt_logprobs[pos][ids[pos]].logprob, abs=1e-3)
        assert len(lp.top_logprobs[pos]) == 2 and max(lp.top_logprobs[pos].values()) >= lp.token_logprobs[pos] - 1e-6
    assert lp.text_offset == [sum(len(t) for t in lp.tokens[:i]) for i in range(n + 3)]
    streamed = [c.choices[0].logprobs for c in client.completions.create(stream=True, **kw) if c.choices]
    tokens = [t for chunk in streamed if chunk for t in chunk.tokens]
    values = [v for chunk in streamed if chunk for v in chunk.token_logprobs]
    assert tokens == lp.tokens and values[0] is None
    assert values[1:] == pytest.approx(lp.token_logprobs[1:], abs=1e-3)


def test_completion_logprobs(client: openai.OpenAI) -> None:
    r = client.completions.create(model=CHAT, prompt="1, 2, 3,", max_tokens=5, temperature=0, logprobs=2)
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == 5
    assert "".join(lp.tokens) == r.choices[0].text
    assert all(len(t) == 2 for t in lp.top_logprobs)
    assert lp.text_offset == [sum(len(t) for t in lp.tokens[:i]) for i in range(5)]


def test_embeddings(client: openai.OpenAI) -> None:
    from brainwork import pipeline

    texts = ["A cat sits on the mat.", "Stocks fell sharply today."]
    pipe = pipeline("sentence-embeddings", model=EMBED)
    ref = pipe(texts)
    default = client.embeddings.create(model=EMBED, input=texts)  # the client asks for base64 by default
    as_float = client.embeddings.create(model=EMBED, input=texts, encoding_format="float")
    for resp in (default, as_float):
        got = np.array([d.embedding for d in resp.data], dtype=np.float32)
        np.testing.assert_allclose(got, ref, atol=1e-6)  # the same runner: float32 round trip only
        assert [d.index for d in resp.data] == [0, 1]
    assert as_float.usage.prompt_tokens == sum(pipe.runner.token_lengths(texts))
    short = client.embeddings.create(model=EMBED, input="hello", dimensions=64, encoding_format="float")
    v = np.array(short.data[0].embedding)
    assert v.shape == (64,) and np.linalg.norm(v) == pytest.approx(1.0, abs=1e-5)


def test_tokenize_detokenize(server: Server, local_llm: LLM) -> None:
    h = {"Authorization": f"Bearer {KEY}"}
    r = httpx.post(f"{server.url}/tokenize", json={"prompt": "Hello world"}, headers=h).json()
    assert r["tokens"] == local_llm.tokenizer.encode("Hello world") and r["count"] == len(r["tokens"])
    assert r["max_model_len"] == WINDOW
    back = httpx.post(f"{server.url}/detokenize", json={"tokens": r["tokens"]}, headers=h).json()
    assert back["prompt"] == "Hello world"
    chat = httpx.post(f"{server.url}/tokenize", json={"messages": _chat("hi")}, headers=h).json()
    assert chat["tokens"] == local_llm.encode_chat(_chat("hi"))


# ---- errors -------------------------------------------------------------------------------------
def _error(resp: httpx.Response, status: int) -> dict:
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    return err


@pytest.mark.parametrize(
    ("patch", "param"),
    [
        ({"temperature": 3}, "temperature"),
        ({"n": 0}, "n"),
        ({"messages": []}, "messages"),
        ({"logit_bias": {"abc": 1}}, "logit_bias"),
        ({"logit_bias": {"99999999": 1}}, "logit_bias"),
        ({"min_tokens": 10, "max_tokens": 5}, "min_tokens"),
        ({"top_logprobs": 30, "logprobs": True}, "top_logprobs"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}, None),
        ({"stop_token_ids": [10**12]}, "stop_token_ids"),
    ],
)
def test_invalid_fields_are_400(server: Server, client: openai.OpenAI, patch: dict, param: str | None) -> None:
    body = {"model": CHAT, "messages": _chat("hi"), "max_tokens": 4}
    extras = {k: v for k, v in patch.items() if k in ("min_tokens", "stop_token_ids")}  # vLLM's extras
    body.update({k: v for k, v in patch.items() if k not in extras})
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(**body, extra_body=extras)
    if param is not None:
        assert e.value.body["param"].startswith(param)
    assert e.value.body["message"]


def test_malformed_json_is_400(server: Server) -> None:
    resp = httpx.post(
        f"{server.url}/v1/chat/completions",
        content=b'{"model": ',
        headers={"Authorization": f"Bearer {KEY}", "content-type": "application/json"},
    )
    assert "JSON" in _error(resp, 400)["message"]


def test_prompt_over_the_context_window_is_400_naming_both_lengths(client: openai.OpenAI) -> None:
    long_text = "word " * 600
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=CHAT, messages=_chat(long_text), max_tokens=4)
    msg = e.value.body["message"]
    assert str(WINDOW) in msg and e.value.body["code"] == "context_length_exceeded"
    n = int(msg.split("However, you requested ")[1].split(" ")[0])
    assert n > WINDOW
    with pytest.raises(openai.BadRequestError) as e:  # fits, but not with the completion asked for
        client.completions.create(model=CHAT, prompt="word " * 400, max_tokens=200)
    assert "in the completion" in e.value.body["message"]


def test_auth_errors_are_401(server: Server) -> None:
    for key in ("wrong-key", KEY + "x"):
        bad = openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            bad.models.list()
    err = _error(httpx.post(f"{server.url}/v1/completions", json={"prompt": "x"}), 401)
    assert err["code"] == "invalid_api_key"
    assert httpx.get(f"{server.url}/health").status_code == 200  # probes need no key


def test_unknown_model_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="gpt-4o", messages=_chat("hi"))
    assert "gpt-4o" in e.value.body["message"]
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="text-embedding-3-small", input="x")
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4o")


def test_oversized_body_is_413(server: Server, client: openai.OpenAI) -> None:
    huge = "x" * int(BODY_LIMIT_MB * 2**20 + 10)
    with pytest.raises(openai.APIStatusError) as e:
        client.embeddings.create(model=EMBED, input=huge)
    assert e.value.status_code == 413

    def chunked():  # no Content-Length: counted as it streams in
        for _ in range(40):
            yield b"x" * 10_000

    resp = httpx.post(f"{server.url}/v1/completions", content=chunked(), headers={"Authorization": f"Bearer {KEY}"})
    _error(resp, 413)


def test_metrics_count_the_work(server: Server, client: openai.OpenAI) -> None:
    before = server.metrics()
    client.chat.completions.create(model=CHAT, messages=_chat("Say yes."), max_tokens=3, temperature=0)
    after = server.metrics()
    assert after["brainwork_generation_tokens_total"] > before.get("brainwork_generation_tokens_total", 0)
    assert after["brainwork_prompt_tokens_total"] >= before.get("brainwork_prompt_tokens_total", 0)
    assert after["brainwork_time_to_first_token_seconds_count"] >= 1
    assert after["brainwork_e2e_request_latency_seconds_count"] >= 1
    done = sum(after.get(f"brainwork_request_success_total:{r}", 0) for r in ("stop", "length"))
    assert done >= 1
    for name in (
        "brainwork_num_requests_running",
        "brainwork_num_requests_waiting",
        "brainwork_kv_cache_usage_perc",
        "brainwork_prefix_cache_queries_total",
        "brainwork_prefix_cache_hits_total",
        "brainwork_inter_token_latency_seconds_count",
    ):
        assert name in after, name


def test_base64_decodes_as_little_endian_float32(server: Server) -> None:
    h = {"Authorization": f"Bearer {KEY}"}
    body = {"model": EMBED, "input": "hello", "encoding_format": "base64"}
    b64 = httpx.post(f"{server.url}/v1/embeddings", json=body, headers=h).json()["data"][0]["embedding"]
    floats = httpx.post(f"{server.url}/v1/embeddings", json={**body, "encoding_format": "float"}, headers=h).json()
    np.testing.assert_array_equal(np.frombuffer(base64.b64decode(b64), "<f4"), floats["data"][0]["embedding"])


def test_every_openai_field_at_once_and_their_effects(client: openai.OpenAI, local_llm: LLM) -> None:
    tok = local_llm.tokenizer
    forced = tok.encode(" banana", add_special_tokens=False)[0]
    r = client.chat.completions.create(
        model=CHAT,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a fruit."}],
        temperature=0.7,
        top_p=0.9,
        n=2,
        seed=5,
        stop=["\n\n"],
        max_completion_tokens=6,
        frequency_penalty=0.0,
        presence_penalty=0.0,
        logit_bias={str(forced): 100},
        logprobs=True,
        top_logprobs=2,
        user="user-1",
        extra_body={"top_k": 50, "min_p": 0.01, "repetition_penalty": 1.0, "min_tokens": 6, "ignore_eos": False},
    )
    for choice in r.choices:  # a +100 bias leaves no other choice: every token is the forced one
        assert choice.message.content == tok.decode([forced] * 6)
        assert choice.finish_reason == "length" and len(choice.logprobs.content) == 6
    stopped = client.completions.create(
        model=CHAT, prompt="1, 2, 3, 4,", max_tokens=30, temperature=0, stop=[" 7"], extra_body={"stop_token_ids": []}
    )
    assert stopped.choices[0].finish_reason == "stop" and " 7" not in stopped.choices[0].text
    assert stopped.choices[0].text.startswith(" 5, 6,")
    penalised = client.completions.create(
        model=CHAT, prompt="1, 2, 3, 4,", max_tokens=12, temperature=0, frequency_penalty=2.0, presence_penalty=2.0
    )
    plain = client.completions.create(model=CHAT, prompt="1, 2, 3, 4,", max_tokens=12, temperature=0)
    assert penalised.choices[0].text != plain.choices[0].text  # penalties reach the sampler
