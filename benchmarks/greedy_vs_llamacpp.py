"""How many of 20 prompts give the same 32 greedy tokens in brainwork and llama.cpp (same GGUF).

Prompt ids come from llama.cpp's own tokenizer so that only the model arithmetic differs.
Also reports agreement with transformers (which dequantizes the GGUF to float) on the first
tokens, to separate "different arithmetic" from "different model".

    .venv/bin/python benchmarks/greedy_vs_llamacpp.py [MODEL ...] [--quantization ggml|none|auto|int8|int4]

The default, quantization "ggml", computes the GGUF file exactly as llama.cpp's CPU backend does
(`brainwork.numerics`): the issue-2 figure. "none" (dequantized float weights, float
activations) shows how far ordinary float arithmetic lands from llama.cpp's quantized one.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from brainwork.loader.decoder import load_decoder
from brainwork.sampling_params import SamplingParams
from brainwork.store import resolve_model
from tests.engine_helpers import engine_for, run_all
from tests.prompts import PROMPTS
from tests.refs.llamacpp import LlamaCpp

NEW_TOKENS = 32


def compare(name: str, quantization: str = "ggml") -> tuple[int, list[int]]:
    resolved = resolve_model(name, progress=False)
    loaded = load_decoder(resolved, progress=False, quantization=quantization)
    engine = engine_for(loaded)
    same, first_diff = 0, []
    with LlamaCpp(resolved.path) as ref:
        prompts = [ref.tokenize(prompt, add_special=True) for prompt in PROMPTS]
        expected = [ref.greedy(ids, NEW_TOKENS) for ids in prompts]
    params = SamplingParams(temperature=0, max_tokens=NEW_TOKENS)
    for want, (got,) in zip(expected, run_all(engine, prompts, params), strict=True):
        if got == want:
            same += 1
        else:
            first_diff.append(next((i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b), len(got)))
    return same, first_diff


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument(
        "models", nargs="*", default=["smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct", "gemma-3-270m"]
    )
    ap.add_argument("--quantization", default="ggml")
    args = ap.parse_args()
    print(f"quantization: {args.quantization}")
    print(f"{'model':32} {'same 32-token output':>22}  first differing position of the others")
    for name in args.models:
        same, diffs = compare(name, args.quantization)
        print(f"{name:32} {same:>19}/{len(PROMPTS)}  {sorted(diffs)}")


if __name__ == "__main__":
    main()
