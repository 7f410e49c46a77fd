"""`brainwork run --task ...` and `brainwork embed`: pipelines over texts, printed as text or JSON."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def read_texts(args: list[str]) -> list[str]:
    """The TEXT arguments, with '-' replaced by stdin's non-empty lines."""
    texts: list[str] = []
    for a in args:
        if a == "-":
            texts += [line.rstrip("\r\n") for line in sys.stdin if line.strip()]
        else:
            texts.append(a)
    if not texts:
        raise ValueError("no input texts (stdin was empty)")
    return texts


def _plain(x: Any) -> Any:
    """Pipeline output -> JSON-ready values (numpy arrays and scalars become lists and floats)."""
    if hasattr(x, "tolist"):
        return x.tolist()
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_plain(v) for v in x]
    return x


def _readable(task: str, text: str, result: Any) -> str:
    """One line for one input."""
    if task in ("sentiment-analysis", "text-classification"):
        labels = result if isinstance(result, list) else [result]
        shown = ", ".join(f"{r['label']} ({r['score']:.3f})" for r in labels)
        return f"{shown}\t{text}"
    if task == "text-generation":
        return str(result[0]["generated_text"])
    return json.dumps(result)  # vectors: one JSON array per line, as `brainwork embed`


def run_task(args: argparse.Namespace) -> int:
    from brainwork.pipelines import pipeline

    texts = read_texts(args.text)
    kwargs: dict[str, Any] = {}
    call: dict[str, Any] = {}
    if args.task == "text-generation":
        from brainwork.cli_generate import show_progress

        kwargs["progress"] = show_progress(args)
        call = {
            "max_new_tokens": args.max_tokens,
            "do_sample": args.temperature > 0,
            "temperature": args.temperature,
            "top_p": args.top_p,
            "top_k": args.top_k,
            "seed": args.seed,
        }
    pipe = pipeline(args.task, model=args.model, **kwargs)
    results = [_plain(pipe(t, **call)) for t in texts]
    if args.json:
        # one input: exactly what the pipeline returns for a string; several: a list of those
        print(json.dumps(results[0] if len(results) == 1 else results))
    else:
        for text, result in zip(texts, results, strict=True):
            print(_readable(args.task, text, result))
    return 0


def cmd_embed(args: argparse.Namespace) -> int:
    from brainwork.pipelines import pipeline

    texts = read_texts(args.text)
    vectors = pipeline("sentence-embeddings", model=args.model)(texts).tolist()  # (N, D), one batched call
    if args.json:
        print(json.dumps(vectors))
    else:
        for v in vectors:
            print(json.dumps(v))
    return 0
