"""A fine-tuned text classifier: brainwork vs transformers' `pipeline("text-classification")`.

The model is DistilBERT of the real shape (distilbert-base-uncased: 6 layers, 768 wide, 30,522
word pieces) with random weights, saved with transformers beside the packaged MiniLM's
uncased word-piece tokenizer (the same vocabulary); a random classifier costs exactly what a
fine-tuned one does. Inputs: mixed-length texts (1 to 8 tweets of `data/sentiment_tweets.tsv`
joined; shuffled with a fixed seed). transformers runs at each batch size given and its best
counts; brainwork runs its length-sorted batches. Prints inputs/s, the ratio, and the largest
score difference between the two sides.

    .venv/bin/python benchmarks/classifier_throughput.py [--inputs 400] [--batch-sizes 1,8,32] [--dtype auto]

brainwork's default dtype is "auto", as the pipeline's: bfloat16 on CPUs with native bfloat16
(AVX-512 BF16, AMX), float32 elsewhere; transformers runs float32 (its pipeline's default).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.embeddings_throughput import inputs
from brainwork import pipeline
from brainwork.store import resolve_model


def make_distilbert(folder: Path) -> None:
    import transformers as tf

    torch.manual_seed(0)
    config = tf.DistilBertConfig(num_labels=2, id2label={0: "NEGATIVE", 1: "POSITIVE"})
    tf.DistilBertForSequenceClassification(config).eval().save_pretrained(folder)
    words = resolve_model("all-minilm-l6-v2").path  # bert-base-uncased's vocabulary, lower-casing
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy(words / name, folder / name)


def timed(fn) -> tuple[float, list]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inputs", type=int, default=400)
    ap.add_argument("--batch-sizes", default="1,8,32", help="transformers batch sizes to try")
    ap.add_argument("--dtype", default="auto", help="brainwork's: auto (bfloat16 where native), float32, bfloat16")
    args = ap.parse_args()
    import transformers

    texts = inputs(args.inputs)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make_distilbert(folder)
        ref = transformers.pipeline("text-classification", model=str(folder), device="cpu")
        ours = pipeline("text-classification", model=str(folder), dtype=args.dtype)
        ref(texts[:8], truncation=True)  # warm-up both
        ours(texts[:8], truncation=True)
        print(f"DistilBERT-base shape, random weights; {len(texts)} inputs, torch threads {torch.get_num_threads()}")
        best_ref, ref_out = float("inf"), None
        for bs in (int(b) for b in args.batch_sizes.split(",")):
            took, out = timed(lambda bs=bs: ref(texts, batch_size=bs, truncation=True))
            print(f"transformers pipeline batch_size={bs:<3}: {len(texts) / took:8.1f} inputs/s")
            if took < best_ref:
                best_ref, ref_out = took, out
        took, out = timed(lambda: ours(texts, truncation=True))
        dtype = str(ours.runner.dtype).removeprefix("torch.")
        print(f"brainwork text-classification:    {len(texts) / took:8.1f} inputs/s ({dtype})")
        diff = max(abs(a["score"] - b["score"]) for a, b in zip(out, ref_out, strict=True))
        same = sum(a["label"] == b["label"] for a, b in zip(out, ref_out, strict=True))
        print(
            f"ratio brainwork / best transformers: {best_ref / took:.2f}x (target >= 2x); "
            f"labels equal {same}/{len(texts)}, max score difference {diff:.2e}"
        )


if __name__ == "__main__":
    main()
