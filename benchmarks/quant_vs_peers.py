"""Issue 7's figures for packed weights (`--quantization auto`) or llama.cpp's arithmetic
(`--quantization ggml`), on smollm2-135m-instruct (Q4_1) and qwen2.5-coder-0.5b-instruct
(Q4_K_M), in one run per model:

1. `brainwork bench`'s table: brainwork against llama.cpp and transformers (prefill, decode at 1
   stream, aggregate at 4/16/64 streams, time to first token, peak memory) and the bandwidth bound.
2. Greedy agreement with llama.cpp: 20 prompts x 32 tokens on the same file.
3. Perplexity of a fixed public text (Debian's GPL-3 text, the first 512 tokens) with those
   weights against float weights dequantized from the same file.

    .venv/bin/python benchmarks/quant_vs_peers.py [--models NAME ...] [--streams 4 16 64] [--tokens 64]
        [--skip bench greedy perplexity] [--quantization auto|ggml]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.greedy_vs_llamacpp import compare
from brainwork.cli_bench import PEERS, format_table, run_bench
from brainwork.loader.decoder import load_decoder
from brainwork.store import resolve_model
from tests.prompts import PROMPTS
from tests.test_quant import TEXT, perplexity

MODELS = ["smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct"]


def perplexities(name: str, quantization: str = "auto", tokens: int = 512) -> tuple[float, float]:
    resolved = resolve_model(name, progress=False)
    packed = load_decoder(resolved, progress=False, quantization=quantization)
    ids = packed.tokenizer.encode(TEXT.read_text())[:tokens]
    ppl_packed = perplexity(packed, ids)
    del packed
    return ppl_packed, perplexity(load_decoder(resolved, progress=False, quantization="none"), ids)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=MODELS)
    ap.add_argument("--streams", type=int, nargs="+", default=[4, 16, 64])
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--skip", nargs="*", default=[], choices=("bench", "greedy", "perplexity"))
    ap.add_argument(
        "--quantization", default="auto", choices=("auto", "ggml"), help="packed weights, or llama.cpp's arithmetic"
    )
    args = ap.parse_args()
    for name in args.models:
        print(f"\n== {name}")
        if "bench" not in args.skip:
            bench = argparse.Namespace(
                model=name,
                quantization=args.quantization,
                dtype="float32",
                threads=args.threads,
                prefill=512,
                prompt=128,
                tokens=args.tokens,
                streams=args.streams,
                peers=list(PEERS),
                repeat=3,
            )
            print(format_table(run_bench(bench), bench))
        if "greedy" not in args.skip:
            same, diffs = compare(name, args.quantization)
            print(
                f"greedy 32 tokens equal to llama.cpp's: {same}/{len(PROMPTS)} (first differences at {sorted(diffs)})"
            )
        if "perplexity" not in args.skip:
            packed, float_ = perplexities(name, args.quantization)
            print(
                f"perplexity, 512 tokens of GPL-3: {args.quantization} {packed:.4f}, float {float_:.4f} "
                f"({packed / float_ - 1:+.2%})"
            )


if __name__ == "__main__":
    main()
