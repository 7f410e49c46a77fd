"""Sentence embeddings: brainwork vs sentence-transformers on the same model, threads and inputs.

2,000 mixed-length inputs (1 to 8 tweets from `data/sentiment_tweets.tsv` joined, so 10 to
~400 tokens, shuffled with a fixed seed). sentence-transformers runs `encode(batch_size=32)`
(it sorts by length too); brainwork runs `pipeline("sentence-embeddings")` (length-sorted
batches under a token budget). Prints inputs/s for each, the ratio, and the lowest cosine
between the two sides' vectors.

    .venv/bin/python benchmarks/embeddings_throughput.py [--inputs 2000] [--repeat 2] [--dtype auto]

brainwork's default dtype is "auto": bfloat16 on CPUs with native bfloat16 (AVX-512 BF16, AMX),
float32 elsewhere; sentence-transformers runs its default float32.
"""

from __future__ import annotations

import argparse
import csv
import random
import time
from pathlib import Path

import numpy as np
import torch

from brainwork import pipeline
from brainwork.store import resolve_model

DATA = Path(__file__).parent / "data" / "sentiment_tweets.tsv"


def inputs(n: int, seed: int = 0) -> list[str]:
    with DATA.open(encoding="utf-8") as f:
        tweets = [r["text"] for r in csv.DictReader(f, delimiter="\t")]
    rng = random.Random(seed)
    return [" ".join(rng.sample(tweets, rng.choice((1, 1, 1, 2, 2, 3, 4, 8)))) for _ in range(n)]


def best_of(repeat: int, fn) -> tuple[float, np.ndarray]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inputs", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=2, help="runs per side; the fastest counts")
    ap.add_argument("--dtype", default="auto", help="brainwork's: auto (bfloat16 where native), float32, bfloat16")
    args = ap.parse_args()
    texts = inputs(args.inputs)
    from sentence_transformers import SentenceTransformer

    folder = str(resolve_model("all-minilm-l6-v2").path)
    st = SentenceTransformer(folder, device="cpu")
    ours = pipeline("sentence-embeddings", model="all-minilm-l6-v2", dtype=args.dtype)
    st.encode(texts[:64], batch_size=32)  # warm-up both
    ours(texts[:64])
    t_st, v_st = best_of(args.repeat, lambda: st.encode(texts, batch_size=32, convert_to_numpy=True))
    t_bw, v_bw = best_of(args.repeat, lambda: ours(texts))
    cos = (v_st * v_bw).sum(1) / (np.linalg.norm(v_st, axis=1) * np.linalg.norm(v_bw, axis=1))
    print(f"all-minilm-l6-v2, {len(texts)} inputs, torch threads {torch.get_num_threads()}")
    print(f"sentence-transformers encode(batch 32): {len(texts) / t_st:8.1f} inputs/s")
    dtype = str(ours.runner.dtype).removeprefix("torch.")
    print(f"brainwork sentence-embeddings:          {len(texts) / t_bw:8.1f} inputs/s ({dtype})")
    print(f"ratio brainwork / sentence-transformers: {t_st / t_bw:.2f}x (target >= 2x); min cosine {cos.min():.6f}")


if __name__ == "__main__":
    main()
