"""Throughput of `brainwork serve` over HTTP against the same engine driven in-process.

One workload, two sides, one after the other (the first is freed before the second loads):

- in-process: `AsyncLLMEngine` over `LLM(...).engine`, requests streamed with `engine.generate`;
- server: `python -m brainwork serve` in a subprocess, requests streamed through the official
  `openai` client (`AsyncOpenAI`) to `/v1/completions` with the same prompt token ids.

N requests (prompt lengths 32-512 random token ids, drawn with a fixed seed), greedy with
`ignore_eos`, so every request generates exactly --max-tokens tokens. Closed loop: C client
coroutines each take the next request from a shared queue as soon as their previous one has
finished. Output tokens are counted from the streams (in-process: the deltas' token ids; HTTP:
the final usage chunk's `completion_tokens`); time runs from the first send to the last finish.
The figure of merit is server / in-process tokens per second (target >= 0.90).
CPU s is the CPU time of every process taking part (the engine's; the server's plus the client's),
a steadier comparison than wall time when other work shares the cores.

    .venv/bin/python benchmarks/server_throughput.py [--model smollm2-135m-instruct]
        [--requests 64] [--concurrency 16] [--max-tokens 64] [--max-model-len 1024]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.workload import BenchRequest, draw_requests
from brainwork.engine.async_engine import AsyncLLMEngine
from brainwork.llm import LLM
from brainwork.sampling_params import SamplingParams

TARGET = 0.90

# One request: (output tokens, seconds from send to first streamed output or None).
Send = Callable[[BenchRequest], Awaitable[tuple[int, float | None]]]


@dataclass
class SideResult:
    seconds: float
    requests: int
    output_tokens: int
    ttft: list[float]
    cpu_seconds: float = float("nan")  # CPU time of every process involved (engine, server, client)

    @property
    def req_s(self) -> float:
        return self.requests / self.seconds

    @property
    def tok_s(self) -> float:
        return self.output_tokens / self.seconds


async def closed_loop(requests: list[BenchRequest], concurrency: int, send: Send) -> SideResult:
    """`concurrency` clients, each sending the next queued request when its previous one finished."""
    pending: asyncio.Queue[BenchRequest] = asyncio.Queue()
    for r in requests:
        pending.put_nowait(r)
    tokens: list[int] = []
    ttft: list[float] = []

    async def client() -> None:
        while True:
            try:
                r = pending.get_nowait()
            except asyncio.QueueEmpty:
                return
            n, first = await send(r)
            tokens.append(n)
            if first is not None:
                ttft.append(first)

    start, cpu0 = time.perf_counter(), time.process_time()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu0
    return SideResult(elapsed, len(tokens), sum(tokens), ttft, cpu)


def _params(r: BenchRequest) -> SamplingParams:
    return SamplingParams(temperature=0, max_tokens=r.max_tokens, ignore_eos=True)


# ---- in-process -------------------------------------------------------------------------------
def in_process(
    model: str, max_model_len: int, make_workload: Callable[[LLM], tuple[list[BenchRequest], BenchRequest]], c: int
) -> tuple[list[BenchRequest], BenchRequest, SideResult]:
    """Load the model, draw the workload from its vocabulary, run it on `AsyncLLMEngine`."""
    llm = LLM(model, max_model_len=max_model_len, progress=False)
    requests, warmup = make_workload(llm)
    engine = AsyncLLMEngine(llm.engine)
    engine.start()

    async def send(r: BenchRequest) -> tuple[int, float | None]:
        t0, first, n = time.perf_counter(), None, 0
        async for out in engine.generate(r.prompt_ids, _params(r)):
            if out.error:
                raise RuntimeError(f"in-process request failed: {out.error}")
            k = sum(len(o.token_ids) for o in out.outputs)
            if k and first is None:
                first = time.perf_counter() - t0
            n += k
        return n, first

    async def run() -> SideResult:
        await send(warmup)
        return await closed_loop(requests, c, send)

    try:
        result = asyncio.run(run())
    finally:
        engine.shutdown()
    return requests, warmup, result


# ---- server -----------------------------------------------------------------------------------
def _process_cpu(pid: int) -> float:
    """CPU seconds (user + system) of another process so far; NaN where /proc is not there."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ServerProcess:
    url: str
    process: subprocess.Popen[bytes]
    log: Path


@contextlib.contextmanager
def serve(model: str, max_model_len: int, timeout: float = 600.0) -> Iterator[ServerProcess]:
    """`brainwork serve` on a free port, yielded once /health says 200; terminated afterwards."""
    port = _free_port()
    log = Path(tempfile.mkstemp(prefix="brainwork-bench-serve-", suffix=".log")[1])
    cmd = [sys.executable, "-m", "brainwork", "serve", "--model", model, "--embedding-model", "none"]
    cmd += ["--port", str(port), "--no-access-log", "--max-model-len", str(max_model_len)]
    with log.open("wb") as sink:
        process = subprocess.Popen(
            cmd, stdout=sink, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}
        )
    server = ServerProcess(f"http://127.0.0.1:{port}", process, log)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited with {process.returncode}:\n{log.read_text(errors='replace')}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{server.url}/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise TimeoutError(f"the server was not healthy within {timeout:.0f} s; log: {log}")
            time.sleep(0.2)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def over_http(
    server: ServerProcess, model: str, requests: list[BenchRequest], warmup: BenchRequest, c: int
) -> SideResult:
    async def run() -> SideResult:
        client = openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="none", max_retries=0, timeout=3600)

        async def send(r: BenchRequest) -> tuple[int, float | None]:
            t0, first, n = time.perf_counter(), None, None
            stream = await client.completions.create(
                model=model,
                prompt=r.prompt_ids,
                max_tokens=r.max_tokens,
                temperature=0,
                stream=True,
                stream_options={"include_usage": True},
                extra_body={"ignore_eos": True},
            )
            async for chunk in stream:
                if chunk.choices and first is None:
                    first = time.perf_counter() - t0
                if chunk.usage is not None:
                    n = chunk.usage.completion_tokens
            if n is None:
                raise RuntimeError("the stream ended without a usage chunk")
            return n, first

        try:
            await send(warmup)
            server_cpu0 = _process_cpu(server.process.pid)
            result = await closed_loop(requests, c, send)
            result.cpu_seconds += _process_cpu(server.process.pid) - server_cpu0
            return result
        finally:
            await client.close()

    return asyncio.run(run())


def log_problems(log: Path) -> list[str]:
    """Lines of the server's log that look like trouble."""
    marks = ("ERROR", "Traceback", "Exception", "WARNING", "CRITICAL")
    return [line for line in log.read_text(errors="replace").splitlines() if any(m in line for m in marks)]


# ---- main -------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--requests", type=int, default=64)
    ap.add_argument("--concurrency", type=int, default=16, help="client coroutines, each one request at a time")
    ap.add_argument("--max-tokens", type=int, default=64, help="output tokens of every request (ignore_eos)")
    ap.add_argument("--max-model-len", type=int, default=1024)
    args = ap.parse_args()
    longest_prompt = min(512, args.max_model_len - args.max_tokens)
    if longest_prompt < 32:
        ap.error("--max-model-len must leave room for a 32-token prompt besides --max-tokens")

    def make_workload(llm: LLM) -> tuple[list[BenchRequest], BenchRequest]:
        vocab, out = llm.config.vocab_size, (args.max_tokens, args.max_tokens)
        requests = draw_requests(args.requests, vocab, prompt_len=(32, longest_prompt), output_len=out, seed=0)
        warmup = draw_requests(1, vocab, prompt_len=(32, longest_prompt), output_len=out, seed=1)[0]
        return requests, warmup

    print(
        f"{args.model}; threads: {torch.get_num_threads()}; {args.requests} requests, prompts 32-{longest_prompt} "
        f"random token ids, {args.max_tokens} output tokens each (greedy, ignore_eos), seed 0; "
        f"{args.concurrency} concurrent streaming clients, closed loop"
    )
    requests, warmup, local = in_process(args.model, args.max_model_len, make_workload, args.concurrency)
    gc.collect()  # the in-process model is gone before the server loads its own

    with serve(args.model, args.max_model_len) as server:
        remote = over_http(server, args.model, requests, warmup, args.concurrency)
    problems = log_problems(server.log)

    expected = args.requests * args.max_tokens
    results = {"in-process (AsyncLLMEngine)": local, "server (AsyncOpenAI, HTTP)": remote}
    print(f"\n{'side':28} {'seconds':>8} {'req/s':>7} {'out tok/s':>10} {'TTFT p50 ms':>12} {'CPU s':>7}")
    for side, r in results.items():
        ttft = statistics.median(r.ttft) * 1e3 if r.ttft else float("nan")
        print(f"{side:28} {r.seconds:8.2f} {r.req_s:7.2f} {r.tok_s:10.1f} {ttft:12.0f} {r.cpu_seconds:7.1f}")
        if r.output_tokens != expected:
            print(f"  warning: {side} generated {r.output_tokens} tokens, expected {expected}")
    ratio = remote.tok_s / local.tok_s
    verdict = "ok" if ratio >= TARGET else "BELOW TARGET"
    print(f"server/in-process requests/s: {remote.req_s / local.req_s:.2f}x")
    print(f"server/in-process tokens/s: {ratio:.2f}x (target >= {TARGET:.2f}): {verdict}")
    if problems:
        print(f"\nthe server's log has {len(problems)} suspicious line(s) (kept at {server.log}):")
        for line in problems[:20]:
            print(f"  {line}")
    else:
        server.log.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
