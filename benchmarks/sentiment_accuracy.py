"""Accuracy and reliability of `pipeline("sentiment-analysis")` on hand-written tweets.

`benchmarks/data/sentiment_tweets.tsv`: 400 tweets about products and services (200 positive,
200 negative), written for this project (sarcasm, negation, mixed tone, slang, emojis); none of
them is one of the pipeline's own few-shot examples. Prints accuracy, time per input, and a
reliability table: inputs binned by the top score, with each bin's accuracy (a calibrated
classifier is right about as often as its score says).

    .venv/bin/python benchmarks/sentiment_accuracy.py [--model NAME ...] [--limit N]
"""

from __future__ import annotations

import argparse
import csv
import itertools
import time
from pathlib import Path

from brainwork import pipeline

DATA = Path(__file__).parent / "data" / "sentiment_tweets.tsv"
BINS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0001)


def load(limit: int | None) -> tuple[list[str], list[str]]:
    with DATA.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))[:limit]
    return [r["text"] for r in rows], [r["label"].upper() for r in rows]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", nargs="*", default=[None], help="models to compare (default: the pipeline's default)")
    ap.add_argument("--limit", type=int, default=None, help="use the first N rows only")
    args = ap.parse_args()
    texts, gold = load(args.limit)
    for model in args.model:
        t0 = time.perf_counter()
        pipe = pipeline("sentiment-analysis", model=model)
        t1 = time.perf_counter()
        out = pipe(texts)
        t2 = time.perf_counter()
        right = [o["label"] == g for o, g in zip(out, gold, strict=True)]
        print(
            f"\n{model or 'default'}: accuracy {sum(right) / len(right):.4f} on {len(right)} tweets; "
            f"load {t1 - t0:.1f} s, {1000 * (t2 - t1) / len(texts):.0f} ms per input"
        )
        print("  top score      inputs  accuracy")
        for lo, hi in itertools.pairwise(BINS):
            hits = [r for o, r in zip(out, right, strict=True) if lo <= o["score"] < hi]
            if hits:
                print(f"  [{lo:.2f}, {min(hi, 1):.2f})   {len(hits):6d}  {sum(hits) / len(hits):8.3f}")


if __name__ == "__main__":
    main()
