"""Peers measured in the same run as brainwork: llama.cpp (xllamacpp) and Hugging Face transformers."""

from __future__ import annotations

import json
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.workload import BenchRequest


def llamacpp_throughput(gguf: Path, requests: list[BenchRequest], threads: int = 2) -> dict[str, float]:
    """All requests at once against llama.cpp's server with one parallel slot per request."""
    import xllamacpp

    longest = max(len(r.prompt_ids) + r.max_tokens for r in requests)
    params = xllamacpp.CommonParams()
    params.model.path = str(gguf)
    params.n_parallel = len(requests)
    params.n_ctx = longest * len(requests)  # llama.cpp splits n_ctx evenly over the slots
    params.n_batch = 2048
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.warmup = True
    server = xllamacpp.Server(params)
    address = server.listening_address

    def one(r: BenchRequest) -> tuple[int, float]:
        body = {
            "prompt": r.prompt_ids,
            "n_predict": r.max_tokens,
            "temperature": 0.0,
            "top_k": 1,
            "ignore_eos": True,
            "cache_prompt": False,
            "return_tokens": True,
        }
        req = urllib.request.Request(
            address + "/completion", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=3600) as resp:
            out = json.loads(resp.read())
        return len(out["tokens"]), out.get("timings", {}).get("prompt_ms", 0.0)

    try:
        start = time.perf_counter()
        with ThreadPoolExecutor(len(requests)) as pool:
            results = list(pool.map(one, requests))
        elapsed = time.perf_counter() - start
    finally:
        del server
    generated = sum(n for n, _ in results)
    return {"seconds": elapsed, "output_tokens": generated, "tok_s": generated / elapsed}


def transformers_throughput(
    gguf: Path, requests: list[BenchRequest], batch_size: int, dtype: str = "float32"
) -> dict[str, float]:
    """Hugging Face `generate` in static batches (arrival order, left padding), weights dequantized
    from the same GGUF file to `dtype`. A batch runs until its longest request is done; only each
    request's own `max_tokens` count as output."""
    import torch
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=getattr(torch, dtype)
    ).eval()
    pad = 0
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(requests), batch_size):
            batch = requests[i : i + batch_size]
            width = max(len(r.prompt_ids) for r in batch)
            ids = torch.tensor([[pad] * (width - len(r.prompt_ids)) + r.prompt_ids for r in batch])
            mask = torch.tensor([[0] * (width - len(r.prompt_ids)) + [1] * len(r.prompt_ids) for r in batch])
            longest = max(r.max_tokens for r in batch)
            model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=longest,
                min_new_tokens=longest,
                do_sample=False,
                pad_token_id=pad,
            )
    elapsed = time.perf_counter() - start
    generated = sum(r.max_tokens for r in requests)
    return {"seconds": elapsed, "output_tokens": generated, "tok_s": generated / elapsed}
