"""`POST /v1/chat/completions` and `POST /v1/completions`, whole or streamed (server-sent events).

Bodies, chunks and usage are shaped as OpenAI and vLLM shape them: a stream opens with a role
chunk per choice, carries content deltas, closes each choice with its `finish_reason`, adds a
usage chunk with empty `choices` when `stream_options.include_usage` asks, and ends with
`data: [DONE]`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.types import Receive, Scope, Send

from brainwork.engine.async_engine import AsyncLLMEngine, EngineDeadError
from brainwork.outputs import CompletionOutput, Logprob, RequestOutput
from brainwork.sampling_params import SamplingParams
from brainwork.server.errors import APIError, bad_request, error_body, from_value_error
from brainwork.server.generation import (
    ClientGone,
    Prompt,
    chat_prompt,
    check_fits,
    completion_prompts,
    merged_outputs,
    sampling_params,
    token_str,
    top_alternatives,
    until_disconnect,
)
from brainwork.server.limits import Admission
from brainwork.server.protocol import ERROR_RESPONSES, ChatCompletionRequest, CompletionRequest
from brainwork.server.state import ServerState

T = TypeVar("T")
_FINISH = {"stop": "stop", "length": "length"}


@dataclass
class _Choice:
    index: int
    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[dict[int, Logprob]] = field(default_factory=list)
    finish_reason: str | None = None
    stop_reason: int | str | None = None


@dataclass
class _Job:
    """One HTTP request's engine work: its prompts, parameters and how results are numbered."""

    state: ServerState
    engine: AsyncLLMEngine
    prompts: list[Prompt]
    params: SamplingParams
    request_id: str
    model: str
    top_k: int | None  # logprob alternatives asked for, None: no logprobs
    created: int = field(default_factory=lambda: int(time.time()))
    # per prompt, when the prompt's own logprobs were asked for (echo with logprobs)
    prompt_logprobs: dict[int, list[dict[int, Logprob] | None]] = field(default_factory=dict)

    def choice_index(self, prompt_index: int, sample_index: int) -> int:
        return prompt_index * self.params.n + sample_index

    def usage(self, completion_tokens: int, cached: int) -> dict[str, Any]:
        prompt_tokens = sum(len(p.ids) for p in self.prompts)
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": cached},
        }

    async def outputs(self) -> AsyncIterator[tuple[int, RequestOutput]]:
        async with contextlib.aclosing(merged_outputs(self.engine, self.prompts, self.params, self.request_id)) as outs:
            async for p, out in outs:
                if out.prompt_logprobs is not None:
                    self.prompt_logprobs[p] = out.prompt_logprobs
                yield p, out

    def echoed(self, p: int) -> tuple[list[str], list[dict[int, Logprob]]]:
        """The echoed prompt for the legacy logprobs: the texts of its leading tokens that have
        nothing to score (the first; every one if no logprobs came), then the scored entries."""
        ids, entries = self.prompts[p].ids, self.prompt_logprobs.get(p) or []
        scored = [e for e in entries if e is not None]
        decode = self.engine.engine.tokenizer.decode
        return [decode([t], skip_special_tokens=False) for t in ids[: len(ids) - len(scored)]], scored

    async def collect(self) -> tuple[list[_Choice], dict[str, Any]]:
        choices = {
            self.choice_index(p, s): _Choice(self.choice_index(p, s))
            for p in range(len(self.prompts))
            for s in range(self.params.n)
        }
        cached = 0
        async with contextlib.aclosing(self.outputs()) as outputs:
            async for p, out in outputs:
                _raise_if_failed(out)
                if out.finished and out.metrics is not None:
                    cached += out.metrics.num_cached_tokens
                for c in out.outputs:
                    ch = choices[self.choice_index(p, c.index)]
                    ch.text += c.text
                    ch.token_ids.extend(c.token_ids)
                    ch.logprobs.extend(c.logprobs or [])
                    if c.finish_reason is not None:
                        ch.finish_reason, ch.stop_reason = _FINISH.get(c.finish_reason, c.finish_reason), c.stop_reason
        ordered = [choices[i] for i in sorted(choices)]
        return ordered, self.usage(sum(len(c.token_ids) for c in ordered), cached)


def _raise_if_failed(out: RequestOutput) -> None:
    if out.error:
        raise APIError(500, f"generation failed: {out.error}", "server_error", code="engine_error")


def build_router(state: ServerState, dependencies: list[Any]) -> APIRouter:
    router = APIRouter(dependencies=dependencies, responses=ERROR_RESPONSES)

    @router.post("/v1/chat/completions", tags=["openai"], summary="Chat completion (OpenAI shape)")
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
        llm, engine = state.chat(body.model)
        if body.top_logprobs is not None and not body.logprobs:
            raise bad_request("top_logprobs: requires logprobs to be true", "top_logprobs")
        prompt = chat_prompt(llm, body)
        explicit = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
        params = sampling_params(body, explicit, (body.top_logprobs or 0) if body.logprobs else None)
        check_fits(engine, prompt, params, "messages", explicit is not None)
        top = params.logprobs
        job = _Job(state, engine, [prompt], params, f"chatcmpl-{uuid.uuid4().hex}", state.chat_name, top)
        if body.stream:
            usage = bool(body.stream_options and body.stream_options.include_usage)
            return await _stream(request, state.generation, lambda: _chat_chunks(job, usage))
        choices, usage_body = await _whole(request, state.generation, job.collect)
        return JSONResponse(
            {
                "id": job.request_id,
                "object": "chat.completion",
                "created": job.created,
                "model": job.model,
                "choices": [
                    {
                        "index": c.index,
                        "message": {"role": "assistant", "content": c.text},
                        "logprobs": _chat_logprobs(c.logprobs, top) if top is not None else None,
                        "finish_reason": c.finish_reason,
                        "stop_reason": c.stop_reason,
                    }
                    for c in choices
                ],
                "usage": usage_body,
                "system_fingerprint": None,
            }
        )

    @router.post("/v1/completions", tags=["openai"], summary="Text completion (OpenAI shape)")
    async def completions(body: CompletionRequest, request: Request) -> Response:
        llm, engine = state.chat(body.model)
        if body.best_of is not None and body.best_of != body.n:
            raise bad_request("best_of: only best_of equal to n is supported", "best_of")
        if body.suffix:
            raise bad_request("suffix: insertion (suffix) is not supported by this model", "suffix")
        prompts = completion_prompts(llm, body.prompt)
        explicit = body.max_tokens
        params = sampling_params(body, explicit if explicit is not None else 16, body.logprobs)
        if body.echo and body.logprobs is not None:  # the echoed prompt comes with its own logprobs
            params = dataclasses.replace(params, prompt_logprobs=body.logprobs)
        for i, p in enumerate(prompts):
            check_fits(engine, p, params, "prompt" if len(prompts) == 1 else f"prompt[{i}]", explicit is not None)
        echo = [(p.text if p.text is not None else llm.tokenizer.decode(p.ids)) if body.echo else "" for p in prompts]
        job = _Job(state, engine, prompts, params, f"cmpl-{uuid.uuid4().hex}", state.chat_name, body.logprobs)
        if body.stream:
            usage = bool(body.stream_options and body.stream_options.include_usage)
            return await _stream(request, state.generation, lambda: _completion_chunks(job, echo, usage))
        choices, usage_body = await _whole(request, state.generation, job.collect)
        n = params.n
        return JSONResponse(
            {
                "id": job.request_id,
                "object": "text_completion",
                "created": job.created,
                "model": job.model,
                "choices": [
                    {
                        "index": c.index,
                        "text": echo[c.index // n] + c.text,
                        "logprobs": _choice_logprobs(job, c, echo[c.index // n]),
                        "finish_reason": c.finish_reason,
                        "stop_reason": c.stop_reason,
                    }
                    for c in choices
                ],
                "usage": usage_body,
                "system_fingerprint": None,
            }
        )

    return router


# ---- running a request -------------------------------------------------------------------------
async def _whole(request: Request, admission: Admission, work: Callable[[], Awaitable[T]]) -> T:
    async def admitted() -> T:
        await admission.acquire()
        try:
            return await work()
        finally:
            admission.release()

    try:
        return await until_disconnect(request, admitted())
    except ClientGone:
        raise _Gone from None
    except EngineDeadError as e:
        raise APIError(503, str(e), "server_error", code="engine_dead") from None
    except ValueError as e:
        raise from_value_error(e) from None


class _Gone(Exception):
    """Nobody is listening any more; the app answers with an empty 499 that no one reads."""


async def _stream(request: Request, admission: Admission, chunks: Callable[[], AsyncIterator[str]]) -> Response:
    try:
        await until_disconnect(request, admission.acquire())
    except ClientGone:
        raise _Gone from None
    return _AdmittedStream(chunks(), admission)


class _AdmittedStream(StreamingResponse):
    """An SSE response that gives its admission slot back however the stream ends (finished,
    failed, or cut off by a disconnect before or while it ran)."""

    def __init__(self, content: AsyncIterator[str], admission: Admission) -> None:
        super().__init__(
            content, media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )
        self._admission = admission

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with contextlib.suppress(Exception):
                await self.body_iterator.aclose()  # type: ignore[attr-defined]
            self._admission.release()


def _sse(obj: Any) -> str:
    return f"data: {json.dumps(obj, separators=(',', ':'), ensure_ascii=False)}\n\n"


_DONE = "data: [DONE]\n\n"


def _stream_error(e: Exception) -> str:
    if isinstance(e, APIError):
        body = e.body()
        body["error"]["code"] = body["error"]["code"] or e.status
        return _sse(body)
    kind = "invalid_request_error" if isinstance(e, ValueError) else "server_error"
    return _sse(error_body(f"{type(e).__name__}: {e}" if kind == "server_error" else str(e), kind))


async def _sse_stream(
    job: _Job,
    head: dict[str, Any],
    include_usage: bool,
    choice_of: Callable[[int, CompletionOutput], dict[str, Any] | None],
    opening: list[dict[str, Any]] | None = None,
) -> AsyncIterator[str]:
    """The SSE body both routes share: opening chunks, one chunk per choice delta that
    `choice_of(prompt index, delta)` turns into a choice, the usage chunk if asked, `[DONE]`."""
    for choice in opening or []:
        yield _sse({**head, "choices": [choice]})
    completion_tokens = cached = 0
    try:
        async with contextlib.aclosing(job.outputs()) as outputs:
            async for p, out in outputs:
                _raise_if_failed(out)
                if out.finished and out.metrics is not None:
                    cached += out.metrics.num_cached_tokens
                for c in out.outputs:
                    completion_tokens += len(c.token_ids)
                    choice = choice_of(p, c)
                    if choice is not None:
                        yield _sse({**head, "choices": [choice]})
    except Exception as e:  # the status line has gone out: report in the stream, then end it
        yield _stream_error(e)
        yield _DONE
        return
    if include_usage:
        yield _sse({**head, "choices": [], "usage": job.usage(completion_tokens, cached)})
    yield _DONE


# ---- chat chunks ---------------------------------------------------------------------------
def _chat_chunks(job: _Job, include_usage: bool) -> AsyncIterator[str]:
    head = {"id": job.request_id, "object": "chat.completion.chunk", "created": job.created, "model": job.model}
    roles = [
        {"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}
        for i in range(job.params.n)
    ]
    return _sse_stream(job, head, include_usage, lambda _, c: _chat_delta(c, job.top_k), roles)


def _chat_delta(c: CompletionOutput, top: int | None) -> dict[str, Any] | None:
    finish = _FINISH.get(c.finish_reason or "", c.finish_reason)
    if finish == "abort" or (not c.text and finish is None and not c.logprobs):
        return None
    chunk: dict[str, Any] = {
        "index": c.index,
        "delta": {"content": c.text} if c.text else {},
        "logprobs": _chat_logprobs(c.logprobs or [], top) if top is not None and c.logprobs else None,
        "finish_reason": finish,
    }
    if finish is not None:
        chunk["stop_reason"] = c.stop_reason
    return chunk


def _chat_logprobs(entries: list[dict[int, Logprob]], top: int | None) -> dict[str, Any]:
    content = []
    for entry in entries:
        chosen = next(iter(entry.values()))  # the engine puts the sampled token first
        content.append(
            {
                **_token_info(chosen),
                "top_logprobs": [_token_info(lp) for _, lp in top_alternatives(entry, top or 0)],
            }
        )
    return {"content": content}


def _token_info(lp: Logprob) -> dict[str, Any]:
    text = token_str(lp)
    return {"token": text, "logprob": max(lp.logprob, -9999.0), "bytes": list(text.encode("utf-8"))}


# ---- completion chunks -----------------------------------------------------------------------
def _completion_chunks(job: _Job, echo: list[str], include_usage: bool) -> AsyncIterator[str]:
    head = {"id": job.request_id, "object": "text_completion", "created": job.created, "model": job.model}
    offsets = {i: 0 for i in range(len(job.prompts) * job.params.n)}
    echoed: set[int] = set()

    def choice_of(p: int, c: CompletionOutput) -> dict[str, Any] | None:
        index = job.choice_index(p, c.index)
        finish = _FINISH.get(c.finish_reason or "", c.finish_reason)
        if finish == "abort":
            return None
        text = c.text
        lps = None
        if echo[p] and index not in echoed:
            echoed.add(index)
            text = echo[p] + text
            if job.top_k is not None:  # the prompt's own logprobs lead the choice's first chunk
                unscored, scored = job.echoed(p)
                lps = _completion_logprobs(scored + (c.logprobs or []), job.top_k, 0, unscored)
                offsets[index] += sum(len(t) for t in lps["tokens"])
        if lps is None and job.top_k is not None and c.logprobs:
            lps = _completion_logprobs(c.logprobs, job.top_k, offsets[index])
            offsets[index] += sum(len(t) for t in lps["tokens"])
        if not text and finish is None and lps is None:
            return None
        choice = {"index": index, "text": text, "logprobs": lps, "finish_reason": finish}
        if finish is not None:
            choice["stop_reason"] = c.stop_reason
        return choice

    return _sse_stream(job, head, include_usage, choice_of)


def _choice_logprobs(job: _Job, c: _Choice, echo: str) -> dict[str, Any] | None:
    """A whole choice's legacy logprobs: the echoed prompt's tokens first when echo is on."""
    if job.top_k is None:
        return None
    if not echo:
        return _completion_logprobs(c.logprobs, job.top_k, 0)
    unscored, scored = job.echoed(c.index // job.params.n)
    return _completion_logprobs(scored + c.logprobs, job.top_k, 0, unscored)


def _completion_logprobs(
    entries: list[dict[int, Logprob]], top: int | None, offset: int, unscored: Sequence[str] = ()
) -> dict[str, Any]:
    """The legacy shape; `unscored`: texts of leading tokens with null logprobs (an echoed prompt's first)."""
    tokens: list[str] = list(unscored)
    token_logprobs: list[float | None] = [None] * len(unscored)
    tops: list[dict[str, float] | None] = [None] * len(unscored)
    offsets: list[int] = []
    for text in unscored:
        offsets.append(offset)
        offset += len(text)
    for entry in entries:
        chosen = next(iter(entry.values()))
        text = token_str(chosen)
        tokens.append(text)
        token_logprobs.append(max(chosen.logprob, -9999.0))
        tops.append({token_str(lp): max(lp.logprob, -9999.0) for _, lp in top_alternatives(entry, top or 0)})
        offsets.append(offset)
        offset += len(text)
    return {"tokens": tokens, "token_logprobs": token_logprobs, "top_logprobs": tops, "text_offset": offsets}
