"""From an OpenAI request to engine requests and back: sampling parameters, prompts, the merged
stream of engine outputs, and cancellation when the client hangs up."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import Request

from brainwork.engine.async_engine import AsyncLLMEngine
from brainwork.llm import LLM
from brainwork.outputs import Logprob, RequestOutput
from brainwork.sampling_params import SamplingParams
from brainwork.server.errors import APIError, bad_request, from_value_error
from brainwork.server.protocol import MAX_STOP, ChatCompletionRequest, ChatMessage, SamplingFields

T = TypeVar("T")


@dataclass
class Prompt:
    text: str | None
    ids: list[int]


def sampling_params(req: SamplingFields, max_tokens: int | None, logprobs: int | None) -> SamplingParams:
    stop = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
    if len(stop) > MAX_STOP:
        raise bad_request(f"stop: at most {MAX_STOP} stop strings, got {len(stop)}", "stop")
    if any(not s for s in stop):
        raise bad_request("stop: stop strings must not be empty", "stop")
    bias: dict[int, float] = {}
    for key, value in (req.logit_bias or {}).items():
        try:
            bias[int(key)] = float(value)
        except ValueError:
            raise bad_request(f"logit_bias: keys must be token ids, got {key!r}", "logit_bias") from None
    try:
        return SamplingParams(
            n=req.n,
            temperature=1.0 if req.temperature is None else req.temperature,
            top_p=1.0 if req.top_p is None else req.top_p,
            top_k=None if req.top_k in (None, 0, -1) else req.top_k,
            min_p=req.min_p or 0.0,
            seed=req.seed,
            max_tokens=max_tokens,
            min_tokens=req.min_tokens,
            stop=stop,
            stop_token_ids=list(req.stop_token_ids or []),
            ignore_eos=req.ignore_eos,
            presence_penalty=req.presence_penalty or 0.0,
            frequency_penalty=req.frequency_penalty or 0.0,
            repetition_penalty=req.repetition_penalty or 1.0,
            logit_bias=bias,
            skip_special_tokens=req.skip_special_tokens,
            logprobs=logprobs,
        )
    except ValueError as e:
        raise from_value_error(e) from None


def check_fits(engine: AsyncLLMEngine, prompt: Prompt, params: SamplingParams, param: str, explicit_max: bool) -> None:
    """Refuse (never truncate) a prompt that does not fit, saying both lengths."""
    window = engine.engine.config.max_model_len
    n = len(prompt.ids)
    if n >= window or (explicit_max and params.max_tokens is not None and n + params.max_tokens > window):
        asked = f"{n} in the {param}" + (f", {params.max_tokens} in the completion" if explicit_max else "")
        total = n + (params.max_tokens or 0) if explicit_max else n
        raise APIError(
            400,
            f"This model's maximum context length is {window} tokens. However, you requested {total} tokens "
            f"({asked}). Please reduce the length of the {param} or the completion.",
            param=param,
            code="context_length_exceeded",
        )
    try:
        engine.engine.check_request(prompt.ids, params)
    except ValueError as e:
        raise from_value_error(e) from None


def chat_messages(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    """Messages as the chat template expects them: text content only, parts joined."""
    out = []
    for i, m in enumerate(messages):
        content = m.content
        if isinstance(content, list):
            texts = []
            for j, part in enumerate(content):
                if part.type != "text" or part.text is None:
                    raise bad_request(
                        f"messages[{i}].content[{j}]: {part.type!r} parts are not supported by this model; "
                        "send text parts",
                        f"messages.{i}.content.{j}",
                    )
                texts.append(part.text)
            content = "\n".join(texts)
        msg: dict[str, Any] = {"role": m.role, "content": content or ""}
        if m.name is not None:
            msg["name"] = m.name
        out.append(msg)
    return out


def chat_prompt(llm: LLM, req: ChatCompletionRequest) -> Prompt:
    if req.response_format is not None and req.response_format.get("type", "text") != "text":
        raise bad_request(
            f"response_format: type {req.response_format.get('type')!r} is not supported yet; use 'text'",
            "response_format",
        )
    if req.tools and req.tool_choice not in (None, "none"):
        raise bad_request("tools: tool calling is not supported by this server yet", "tools")
    messages = chat_messages(req.messages)
    kwargs = dict(req.chat_template_kwargs or {})
    for reserved in ("messages", "add_generation_prompt", "special_tokens"):
        if reserved in kwargs:
            raise bad_request(f"chat_template_kwargs: {reserved!r} cannot be set here", "chat_template_kwargs")
    try:
        ids = llm.encode_chat(messages, req.add_generation_prompt, kwargs)
    except Exception as e:  # the template ran on the user's messages: whatever it raises is their input's fault
        raise bad_request(f"messages: the chat template could not render them: {e}", "messages") from None
    return Prompt(None, ids)


def completion_prompts(llm: LLM, prompt: str | list[str] | list[int] | list[list[int]]) -> list[Prompt]:
    if isinstance(prompt, str):
        items: list[Any] = [prompt]
    elif prompt and all(isinstance(t, int) for t in prompt):
        items = [prompt]
    else:
        items = list(prompt)
    if not items:
        raise bad_request("prompt: empty list", "prompt")
    out = []
    for item in items:
        if isinstance(item, str):
            out.append(Prompt(item, llm.tokenizer.encode(item)))
        else:
            out.append(Prompt(None, list(item)))
    return out


async def merged_outputs(
    engine: AsyncLLMEngine, prompts: list[Prompt], params: SamplingParams, base_id: str
) -> AsyncIterator[tuple[int, RequestOutput]]:
    """(prompt index, delta) for every prompt's engine request, as they come.

    Closing this iterator (the client went away) cancels every request, which aborts them in
    the engine and frees their KV blocks."""
    if len(prompts) == 1:
        only = engine.generate(prompts[0].ids, params, request_id=base_id, prompt=prompts[0].text)
        async with contextlib.aclosing(only) as outputs:  # closing it aborts the request at once
            async for out in outputs:
                yield 0, out
        return
    queue: asyncio.Queue[tuple[int, RequestOutput | BaseException | None]] = asyncio.Queue()

    async def pump(i: int, p: Prompt) -> None:
        try:
            async for out in engine.generate(p.ids, params, request_id=f"{base_id}-{i}", prompt=p.text):
                queue.put_nowait((i, out))
        except Exception as e:
            queue.put_nowait((i, e))
        finally:
            queue.put_nowait((i, None))

    tasks = [asyncio.create_task(pump(i, p)) for i, p in enumerate(prompts)]
    try:
        remaining = len(tasks)
        while remaining:
            i, item = await queue.get()
            if item is None:
                remaining -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield i, item
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class ClientGone(Exception):
    """The client disconnected before the response was ready."""


async def until_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Run `work` unless the client hangs up first; then cancel it (which aborts its requests)."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        watcher.cancel()
    if task in done:
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    raise ClientGone


async def _disconnected(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def top_alternatives(entry: dict[int, Logprob], k: int) -> list[tuple[int, Logprob]]:
    """The k likeliest tokens of one position. The engine stores the chosen token plus the top k,
    so there are k entries when the chosen token is among them and k + 1 when it is not."""
    return sorted(entry.items(), key=lambda kv: -kv[1].logprob)[:k]


def token_str(lp: Logprob) -> str:
    return lp.decoded_token or ""
