"""`brainwork run` (completion, or a task pipeline) and `brainwork chat`: tokens stream to stdout."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any, TextIO

from brainwork.catalog import DEFAULT_CHAT_MODEL

log = logging.getLogger("brainwork")


def show_progress(args: argparse.Namespace) -> bool:
    # bars redraw in place on a terminal; in a pipe or a log they would be hundreds of lines
    return sys.stderr.isatty() or bool(args.verbose)


def _load_llm(model: str, args: argparse.Namespace) -> Any:
    from brainwork.llm import LLM

    log.info("loading %s", model)
    # one prompt at a time from the shell: a KV cache for one full context, not a server's worth
    llm = LLM(
        model,
        progress=show_progress(args),
        max_num_seqs=1,
        quantization=getattr(args, "quantization", "none"),
        dtype=getattr(args, "dtype", "float32"),
    )
    log.info("loaded %s from %s (context %d tokens)", llm.resolved.name, llm.resolved.path, llm.max_model_len)
    return llm


def _stream_to(out: TextIO, deltas: Any) -> str:
    """Write each delta's new text as it comes; return the whole text."""
    parts: list[str] = []
    for delta in deltas:
        text = delta.outputs[0].text
        if text:
            out.write(text)
            out.flush()
            parts.append(text)
    return "".join(parts)


def cmd_run(args: argparse.Namespace) -> int:
    if args.task is not None:
        from brainwork.cli_tasks import run_task

        return run_task(args)
    from brainwork.sampling_params import SamplingParams

    params = SamplingParams(  # built before loading, so a bad flag fails at once
        max_tokens=args.max_tokens, temperature=args.temperature, top_p=args.top_p, top_k=args.top_k, seed=args.seed
    )
    llm = _load_llm(args.model or DEFAULT_CHAT_MODEL, args)
    text = " ".join(args.text)
    prompt: Any = {"prompt_token_ids": llm.encode_chat([{"role": "user", "content": text}])} if args.chat else text
    if args.json:
        import json

        # a script wants one JSON document, so nothing streams
        out = llm.generate([prompt], params)[0].outputs[0]
        print(json.dumps({"prompt": text, "text": out.text, "finish_reason": out.finish_reason}))
        return 0
    reply = _stream_to(sys.stdout, llm.stream(prompt, params))
    if not reply.endswith("\n"):
        print()
    return 0


def _fit_history(llm: Any, messages: list[dict[str, str]], reserve: int) -> list[int]:
    """Encode the conversation, dropping the oldest exchanges until `reserve` tokens are left to reply."""
    first = 1 if messages and messages[0]["role"] == "system" else 0
    while True:
        ids: list[int] = llm.encode_chat(messages)
        if len(ids) + reserve <= llm.max_model_len or len(messages) - first <= 1:
            return ids  # the newest message alone is too long: the engine says so with a clear error
        log.info("conversation is %d tokens; forgetting the oldest exchange", len(ids))
        del messages[first : first + 2]


def _read_line(interactive: bool) -> str | None:
    if interactive:
        try:
            return input(">>> ")  # input() gives line editing on a terminal
        except EOFError:
            print()
            return None
    line = sys.stdin.readline()
    return line.rstrip("\n") if line else None


def cmd_chat(args: argparse.Namespace) -> int:
    from brainwork.sampling_params import SamplingParams

    params = SamplingParams(max_tokens=args.max_tokens, temperature=args.temperature)
    llm = _load_llm(args.model, args)
    system = [{"role": "system", "content": args.system}] if args.system else []
    messages = list(system)
    interactive = sys.stdin.isatty()
    if interactive:
        print("Type a message; /reset forgets the conversation, /exit quits.", file=sys.stderr)
    reserve = min(args.max_tokens, llm.max_model_len // 2)
    while (line := _read_line(interactive)) is not None:
        text = line.strip()
        if text in ("/exit", "/quit", "/bye"):
            break
        if text == "/reset":
            messages = list(system)
            print("(conversation cleared)", file=sys.stderr)
            continue
        if not text:
            continue
        messages.append({"role": "user", "content": text})
        ids = _fit_history(llm, messages, reserve)
        try:
            reply = _stream_to(sys.stdout, llm.stream({"prompt_token_ids": ids}, params))
        except KeyboardInterrupt:
            messages.pop()  # Ctrl-C stops this reply, not the chat
            print("\n(interrupted)", file=sys.stderr)
            continue
        print()
        messages.append({"role": "assistant", "content": reply})
    return 0
