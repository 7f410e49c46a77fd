"""Aggregate throughput of the batching engine against llama.cpp and transformers, in one run.

64 requests (prompt lengths 32-512, output lengths 32-256, drawn with a fixed seed) all arrive at
once; every engine generates greedily to each request's length on the same GGUF file with the
same thread count. brainwork and transformers compute in float32 on weights dequantized from
that file; llama.cpp computes on the file's own quantized blocks (it cannot do otherwise).

Also measured: time to first token of a new request joining a busy batch against the same
request on an idle engine, and the engine's own Python time per step (step wall time minus
model forward time, from the engine's counters).

    .venv/bin/python benchmarks/engine_throughput.py [--models NAME ...] [--requests 64]
        [--peers llamacpp transformers] [--hf-batch 16] [--dtype float32|bfloat16]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.peers import llamacpp_throughput, transformers_throughput
from benchmarks.workload import BenchRequest, draw_requests
from brainwork.llm import LLM
from brainwork.sampling_params import SamplingParams

MODELS = ["smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct"]


def brainwork_throughput(llm: LLM, requests: list[BenchRequest]) -> dict[str, float]:
    engine = llm.engine
    before = engine.get_stats()
    steps0, step_s0, fwd_s0 = before.steps, before.step_seconds, before.forward_seconds
    prompts = [{"prompt_token_ids": r.prompt_ids} for r in requests]
    params = [SamplingParams(temperature=0, max_tokens=r.max_tokens, ignore_eos=True) for r in requests]
    start = time.perf_counter()
    outs = llm.generate(prompts, params, use_tqdm=False)
    elapsed = time.perf_counter() - start
    generated = sum(len(o.outputs[0].token_ids) for o in outs)
    s = engine.get_stats()
    steps = s.steps - steps0
    overhead = ((s.step_seconds - step_s0) - (s.forward_seconds - fwd_s0)) / steps
    return {"seconds": elapsed, "output_tokens": generated, "tok_s": generated / elapsed, "overhead_ms": overhead * 1e3}


def _first_token_seconds(llm: LLM, prompt: list[int], busy: list[BenchRequest]) -> float:
    """Time from adding `prompt` until its first token, with the `busy` requests decoding meanwhile."""
    engine = llm.engine
    for i, r in enumerate(busy):
        engine.add_request(
            f"busy-{i}", r.prompt_ids, SamplingParams(temperature=0, max_tokens=r.max_tokens, ignore_eos=True)
        )
    while any(s.num_computed < s.num_prompt_tokens for s in engine.scheduler.running) or engine.scheduler.waiting:
        engine.step()  # until every busy request decodes
    start = time.perf_counter()
    engine.add_request("probe", prompt, SamplingParams(temperature=0, max_tokens=1))
    ttft = None
    while ttft is None:
        for out in engine.step():
            if out.request_id == "probe" and out.outputs and out.outputs[0].token_ids:
                ttft = time.perf_counter() - start
    for i in range(len(busy)):
        engine.abort_request(f"busy-{i}")
    return ttft


def ttft_busy_vs_idle(llm: LLM, vocab: int, prompt_len: int = 256, busy: int = 32) -> dict[str, float]:
    rng = random.Random(1)
    probes = [[rng.randint(1000, vocab - 1000) for _ in range(prompt_len)] for _ in range(6)]
    load = draw_requests(busy, vocab, prompt_len=(64, 256), output_len=(400, 500), seed=2)
    idle = statistics.median(_first_token_seconds(llm, p, []) for p in probes[:3])
    loaded = statistics.median(_first_token_seconds(llm, p, load) for p in probes[3:])
    return {"idle_s": idle, "busy_s": loaded, "ratio": loaded / idle}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=MODELS)
    ap.add_argument("--requests", type=int, default=64)
    ap.add_argument("--peers", nargs="*", default=["llamacpp", "transformers"])
    ap.add_argument("--hf-batch", type=int, default=16, help="transformers' static batch size")
    ap.add_argument("--no-ttft", action="store_true")
    ap.add_argument(
        "--dtype", default="float32", choices=["float32", "bfloat16"], help="brainwork's and transformers' (float32)"
    )
    args = ap.parse_args()
    threads = torch.get_num_threads()
    print(f"threads: {threads}; {args.requests} requests, prompts 32-512, outputs 32-256, seed 0, greedy, {args.dtype}")
    for name in args.models:
        llm = LLM(name, progress=False, max_model_len=2048, dtype=args.dtype)
        reqs = draw_requests(args.requests, llm.config.vocab_size, seed=0)
        results = {"brainwork": brainwork_throughput(llm, reqs)}
        ttft = None if args.no_ttft else ttft_busy_vs_idle(llm, llm.config.vocab_size)
        path = llm.resolved.path
        del llm
        if "llamacpp" in args.peers:
            results["llama.cpp"] = llamacpp_throughput(path, reqs, threads=threads)
        if "transformers" in args.peers:
            hf = transformers_throughput(path, reqs, args.hf_batch, args.dtype)
            results[f"transformers (batch {args.hf_batch})"] = hf
        ours = results["brainwork"]["tok_s"]
        print(f"\n{name}")
        print(f"{'engine':28} {'seconds':>8} {'out tok/s':>10} {'brainwork / it':>15}")
        for engine, r in results.items():
            print(f"{engine:28} {r['seconds']:8.1f} {r['tok_s']:10.1f} {ours / r['tok_s']:14.2f}x")
        overhead = results["brainwork"]["overhead_ms"]
        print(f"brainwork engine overhead per step (step time - forward time): {overhead:.1f} ms")
        if ttft:
            print(
                f"time to first token, 256-token prompt: idle {ttft['idle_s'] * 1e3:.0f} ms, joining 32 decoding "
                f"requests {ttft['busy_s'] * 1e3:.0f} ms: {ttft['ratio']:.2f}x"
            )


if __name__ == "__main__":
    main()
