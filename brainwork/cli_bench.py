"""`brainwork bench`: brainwork, llama.cpp and transformers on one model and workload, in one run.

Each engine runs in its own child process (`python -m brainwork.cli_bench --worker ENGINE ...`)
so that its peak resident memory (VmHWM) is its own; all use the same GGUF file, the same
thread count and the same token ids. The table gives brainwork's value and its ratio to each
peer; beside it the memory-bandwidth bound of decoding: measured read bandwidth / weight bytes
read per token. The bandwidth is the best of readings taken before and after every engine's run:
on a shared host one reading can land on a busy moment and understate the bound.

Workload (all greedy, `ignore_eos`): prefill = one prompt of `--prefill` tokens; time to first
token = one prompt of `--prompt` tokens, one token out; decode = one stream of `--tokens` tokens;
aggregate at S streams = S prompts of `--prompt` tokens each generating `--tokens`, all at once
(wall-clock output tokens per second, prefill included, as a server sees it); generation at S
streams = the tokens after each stream's first over the time the run takes beyond S other prompts
of the same length generating one token each (the decode phase alone, what llama.cpp's
`llama-batched-bench` reports as S_TG). Prefill, time to
first token and decode are the best of `--repeat` runs for every engine alike (shared machines
are noisy; the best run is the one least disturbed).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from brainwork.catalog import DEFAULT_CHAT_MODEL
from brainwork.errors import BrainworkError

PEERS = ("llamacpp", "transformers")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="measure speed against llama.cpp and transformers in one run",
        description=__doc__.split("\n\n")[1],
    )
    p.add_argument("-m", "--model", default=DEFAULT_CHAT_MODEL, help=f"a GGUF model (default: {DEFAULT_CHAT_MODEL})")
    _add_options(p)


def _add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quantization", default="auto", choices=("auto", "none", "int8", "int4", "ggml"))
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    p.add_argument("--threads", type=int, default=None, help="threads for every engine (default: torch's)")
    p.add_argument("--prefill", type=int, default=512, metavar="N", help="prefill prompt tokens (default: 512)")
    p.add_argument("--prompt", type=int, default=128, metavar="N", help="prompt tokens per stream (default: 128)")
    p.add_argument("--tokens", type=int, default=64, metavar="N", help="tokens generated per stream (default: 64)")
    p.add_argument("--streams", type=int, nargs="+", default=[4, 16, 64], metavar="S", help="(default: 4 16 64)")
    p.add_argument("--peers", nargs="*", default=list(PEERS), choices=PEERS, help="(default: both)")
    p.add_argument(
        "--repeat", type=int, default=3, metavar="N", help="prefill, TTFT and 1-stream decode: best of N (default: 3)"
    )
    p.add_argument("--json", action="store_true", help="print the measurements as JSON")


# ---- the workload -------------------------------------------------------------------------------
def _prompts(vocab: int, n: int, length: int, seed: int) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randint(1000, vocab - 1000) for _ in range(length)] for _ in range(n)]


def _reps(a: argparse.Namespace) -> range:
    return range(max(1, getattr(a, "repeat", 1)))


def _peak_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def measure_bandwidth() -> float:
    """Read bandwidth in bytes/s: best of 5 sums over a 256 MB array (larger than any cache here)."""
    import torch

    a = torch.ones(64 * 2**20)
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        a.sum()
        best = min(best, time.perf_counter() - t)
    return a.numel() * 4 / best


# ---- workers: one engine each, in a child process -------------------------------------------------
def _streams(out: dict[str, Any], s: int, tokens: int, full: tuple[float, int], first_only: float) -> None:
    """agg{s}: output tokens / wall time; gen{s}: the tokens after the first / the time beyond a
    one-token run of S other prompts of the same length (prefill and first tokens)."""
    seconds, produced = full
    out[f"agg{s}_tok_s"] = produced / seconds
    out[f"gen{s}_tok_s"] = s * (tokens - 1) / max(seconds - first_only, 1e-9)


def _work_brainwork(a: argparse.Namespace, vocab: int) -> dict[str, Any]:
    import torch

    from brainwork.llm import LLM
    from brainwork.numerics.kquant_linear import GGMLKQuantLinear
    from brainwork.numerics.native import NativeBlockLinear
    from brainwork.quant.linear import QuantLinear
    from brainwork.sampling_params import SamplingParams

    most = max(a.streams)
    llm = LLM(
        a.model,
        quantization=a.quantization,
        dtype=a.dtype,
        progress=False,
        max_model_len=max(a.prefill, a.prompt + a.tokens) + 8,
        max_num_seqs=most,
        max_num_batched_tokens=max(512, a.prefill),
    )
    one = SamplingParams(temperature=0, max_tokens=1, ignore_eos=True)
    gen = SamplingParams(temperature=0, max_tokens=a.tokens, ignore_eos=True)
    llm.generate([{"prompt_token_ids": _prompts(vocab, 1, 16, 9)[0]}], gen, use_tqdm=False)  # warm up
    out: dict[str, Any] = {}

    def seconds(ids: list[int]) -> float:
        t = time.perf_counter()
        llm.generate([{"prompt_token_ids": ids}], one, use_tqdm=False)
        return time.perf_counter() - t

    def decode() -> float:
        times = [time.perf_counter() for _ in llm.stream({"prompt_token_ids": _prompts(vocab, 1, a.prompt, 3)[0]}, gen)]
        return (len(times) - 1) / (times[-1] - times[0])

    # distinct prompts per repeat: prefix caching must not turn a repeat into a cache hit
    out["prefill_tok_s"] = a.prefill / min(seconds(_prompts(vocab, 1, a.prefill, 1000 + i)[0]) for i in _reps(a))
    out["ttft_s"] = min(seconds(_prompts(vocab, 1, a.prompt, 2000 + i)[0]) for i in _reps(a))
    out["decode_tok_s"] = max(decode() for _ in _reps(a))

    def streams(s: int, seed: int, params: SamplingParams) -> tuple[float, int]:
        prompts = [{"prompt_token_ids": p} for p in _prompts(vocab, s, a.prompt, seed)]
        t = time.perf_counter()
        res = llm.generate(prompts, params, use_tqdm=False)
        return time.perf_counter() - t, sum(len(r.outputs[0].token_ids) for r in res)

    for s in a.streams:
        _streams(out, s, a.tokens, streams(s, 100 + s, gen), streams(s, 300 + s, one)[0])
    # bytes read per decoded token: every matrix once (the GGUF-row embedding reads only one row)
    weight_bytes = 0
    for m in llm.model.modules():
        if isinstance(m, (QuantLinear, NativeBlockLinear, GGMLKQuantLinear)):  # packed, or GGUF blocks
            tensors = [*m.buffers(), *(getattr(m, "c_form", None) or ())]  # K-quants: unpacked integers
            weight_bytes += sum(b.numel() * b.element_size() for b in tensors)
        elif (packed := getattr(m, "packed", None)) is not None:  # FloatLinear in oneDNN's blocked layout only
            weight_bytes += torch.ops.mkldnn._nbytes(packed)
        elif isinstance(m, torch.nn.Linear) and (blocks := getattr(m, "blocks", None)) is not None:  # blocked in place
            weight_bytes += blocks.numel() * blocks.element_size()
        elif isinstance(m, torch.nn.Linear):
            weight_bytes += m.weight.numel() * m.weight.element_size()
    out["weight_bytes"] = weight_bytes
    out["kept"] = llm.weights_kept
    return out


def _work_llamacpp(a: argparse.Namespace, vocab: int, path: Path, threads: int) -> dict[str, Any]:
    import urllib.request
    from concurrent.futures import ThreadPoolExecutor

    import xllamacpp

    most = max(a.streams)
    params = xllamacpp.CommonParams()
    params.model.path = str(path)
    params.n_parallel = most
    params.n_ctx = max(a.prefill, a.prompt + a.tokens) * most + 64 * most  # split evenly over the slots
    params.n_batch = max(512, a.prefill)
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.warmup = True
    server = xllamacpp.Server(params)

    def run(ids: list[int], n: int) -> dict[str, Any]:
        body = {"prompt": ids, "n_predict": n, "temperature": 0.0, "top_k": 1, "ignore_eos": True}
        body |= {"cache_prompt": False, "return_tokens": True}
        req = urllib.request.Request(
            server.listening_address + "/completion",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=3600) as resp:
            return json.loads(resp.read())

    out: dict[str, Any] = {}
    run(_prompts(vocab, 1, 16, 9)[0], a.tokens)

    def seconds(ids: list[int]) -> float:
        t = time.perf_counter()
        run(ids, 1)
        return time.perf_counter() - t

    out["prefill_tok_s"] = a.prefill / min(seconds(_prompts(vocab, 1, a.prefill, 1000 + i)[0]) for i in _reps(a))
    out["ttft_s"] = min(seconds(_prompts(vocab, 1, a.prompt, 2000 + i)[0]) for i in _reps(a))
    out["decode_tok_s"] = max(  # llama.cpp's own decode timer
        run(_prompts(vocab, 1, a.prompt, 3)[0], a.tokens)["timings"]["predicted_per_second"] for _ in _reps(a)
    )

    def streams(s: int, seed: int, n: int) -> tuple[float, int]:
        prompts = _prompts(vocab, s, a.prompt, seed)
        t = time.perf_counter()
        with ThreadPoolExecutor(s) as pool:
            res = list(pool.map(lambda p: run(p, n), prompts))
        return time.perf_counter() - t, sum(len(x["tokens"]) for x in res)

    for s in a.streams:
        _streams(out, s, a.tokens, streams(s, 100 + s, a.tokens), streams(s, 300 + s, 1)[0])
    return out  # the server stops when `server` is collected, with this frame


def _work_transformers(a: argparse.Namespace, vocab: int, path: Path) -> dict[str, Any]:
    """float32 weights dequantized from the same file; static batches of equal-length prompts."""
    import torch
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=torch.float32
    ).eval()

    def generate(prompts: list[list[int]], n: int) -> float:
        t = time.perf_counter()
        with torch.inference_mode():
            model.generate(
                input_ids=torch.tensor(prompts),
                attention_mask=torch.ones(len(prompts), len(prompts[0]), dtype=torch.long),
                max_new_tokens=n,
                min_new_tokens=n,
                do_sample=False,
                pad_token_id=0,
            )
        return time.perf_counter() - t

    out: dict[str, Any] = {}
    generate(_prompts(vocab, 1, 16, 9), 4)
    out["prefill_tok_s"] = a.prefill / min(generate(_prompts(vocab, 1, a.prefill, 1000 + i), 1) for i in _reps(a))
    out["ttft_s"] = min(generate(_prompts(vocab, 1, a.prompt, 2000 + i), 1) for i in _reps(a))
    total = min(generate(_prompts(vocab, 1, a.prompt, 3), a.tokens) for _ in _reps(a))
    out["decode_tok_s"] = (a.tokens - 1) / max(total - out["ttft_s"], 1e-9)
    for s in a.streams:
        full = generate(_prompts(vocab, s, a.prompt, 100 + s), a.tokens), s * a.tokens
        _streams(out, s, a.tokens, full, generate(_prompts(vocab, s, a.prompt, 300 + s), 1))
    return out


def _worker(engine: str, a: argparse.Namespace) -> None:
    import torch

    from brainwork.loader.gguf import GGUFFile
    from brainwork.store import resolve_model

    threads = a.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    resolved = resolve_model(a.model, progress=False)
    vocab = int(GGUFFile(resolved.path).get("vocab_size") or 32000) if resolved.format == "gguf" else 32000
    if engine == "brainwork":
        out = _work_brainwork(a, vocab)
    elif engine == "llamacpp":
        out = _work_llamacpp(a, vocab, resolved.path, threads)
    else:
        out = _work_transformers(a, vocab, resolved.path)
    out["peak_bytes"] = _peak_bytes()
    out["threads"] = threads
    print("BENCH " + json.dumps(out), flush=True)


# ---- the parent: run the workers, print one table ------------------------------------------------
def _run_worker(engine: str, a: argparse.Namespace) -> dict[str, Any]:
    argv = [sys.executable, "-m", "brainwork.cli_bench", "--worker", engine, "-m", a.model]
    argv += ["--quantization", a.quantization, "--dtype", a.dtype, "--prefill", str(a.prefill)]
    argv += ["--prompt", str(a.prompt), "--tokens", str(a.tokens), "--streams", *map(str, a.streams)]
    argv += ["--repeat", str(a.repeat)]
    if a.threads:
        argv += ["--threads", str(a.threads)]
    proc = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH ")]
    if proc.returncode != 0 or not lines:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise BrainworkError(f"the {engine} benchmark failed (exit {proc.returncode}):\n{tail}")
    result = json.loads(lines[-1][len("BENCH ") :])
    print(f"{engine}: {json.dumps(result)}", file=sys.stderr, flush=True)  # kept even if a later peer fails
    return result


def run_bench(a: argparse.Namespace) -> dict[str, dict[str, Any]]:
    # in this process, not the workers: the 256 MB probe array would count in their peak memory
    readings = [measure_bandwidth()]
    results = {"brainwork": _run_worker("brainwork", a)}
    readings.append(measure_bandwidth())
    for peer in a.peers:
        results[peer] = _run_worker(peer, a)
        readings.append(measure_bandwidth())
    results["brainwork"]["bandwidth"] = max(readings)
    results["brainwork"]["bandwidth_readings"] = readings
    return results


def format_table(results: dict[str, dict[str, Any]], a: argparse.Namespace) -> str:
    ours = results["brainwork"]
    peers = [p for p in results if p != "brainwork"]
    rows = [("prefill tok/s", "prefill_tok_s"), ("decode tok/s, 1 stream", "decode_tok_s")]
    rows += [(f"aggregate tok/s, {s} streams", f"agg{s}_tok_s") for s in a.streams]
    rows += [(f"generation tok/s, {s} streams", f"gen{s}_tok_s") for s in a.streams]
    rows += [("time to first token, ms", "ttft_s"), ("peak memory, MB", "peak_bytes")]
    head = f"{'':30} {'brainwork':>10}" + "".join(f" {p:>12} {'ratio':>7}" for p in peers)
    lines = [head]
    for label, key in rows:
        scale = 1e3 if key == "ttft_s" else 1e-6 if key == "peak_bytes" else 1.0
        line = f"{label:30} {ours[key] * scale:10.1f}"
        for p in peers:
            theirs = results[p][key]
            line += f" {theirs * scale:12.1f} {ours[key] / theirs:6.2f}x"
        lines.append(line)
    bound, readings = ours["bandwidth"] / ours["weight_bytes"], ours["bandwidth_readings"]
    lines.append(
        f"bound: {ours['bandwidth'] / 1e9:.1f} GB/s read (best of {len(readings)} readings, lowest "
        f"{min(readings) / 1e9:.1f}) / {ours['weight_bytes'] / 1e6:.0f} MB of weights per token = "
        f"{bound:.0f} tok/s; decode at 1 stream reaches {ours['decode_tok_s'] / bound:.0%} of it"
    )
    lines.append(
        f"threads {ours['threads']}; weights kept as {ours['kept']}; ratio = brainwork / peer "
        "(for ms and MB, lower is better)"
    )
    return "\n".join(lines)


def cmd_bench(args: argparse.Namespace) -> int:
    from brainwork.store import resolve_model

    resolved = resolve_model(args.model)
    if resolved.format != "gguf":
        raise ValueError(f"bench: {args.model} is not a GGUF model; llama.cpp needs one")
    results = run_bench(args)
    print(json.dumps(results, indent=1) if args.json else format_table(results, args))
    return 0


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="brainwork.cli_bench")
    ap.add_argument("--worker", choices=("brainwork", *PEERS), required=True)
    ap.add_argument("-m", "--model", required=True)
    _add_options(ap)
    _worker(ap.parse_args(argv).worker, ap.parse_args(argv))


if __name__ == "__main__":
    main()
