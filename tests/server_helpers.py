"""A real `brainwork serve` process on a free port, for tests that talk HTTP to it."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, url: str, process: subprocess.Popen, log: Path) -> None:
        self.url, self.process, self.log = url, process, log

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def metrics(self) -> dict[str, float]:
        """`/metrics` samples by name (labels dropped; the server has one model per metric)."""
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        out: dict[str, float] = {}
        for line in text.splitlines():
            m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$", line)
            if m and not line.startswith("#"):
                key = m.group(1) + (_reason(m.group(2)) if m.group(2) else "")
                out[key] = float(m.group(3))
        return out


def _reason(labels: str) -> str:
    m = re.search(r'finished_reason="(\w+)"', labels)
    return f":{m.group(1)}" if m else ""


@contextlib.contextmanager
def serve(*args: str, wait: bool = True, timeout: float = 180.0) -> Iterator[Server]:
    """Start `brainwork serve ARGS` and (with `wait`) block until /health says 200."""
    port = free_port()
    log = Path(tempfile.mkstemp(prefix="brainwork-serve-", suffix=".log")[1])
    cmd = [sys.executable, "-m", "brainwork", "serve", "--port", str(port), "--no-access-log", *args]
    with log.open("wb") as sink:
        process = subprocess.Popen(
            cmd, stdout=sink, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}
        )
    server = Server(f"http://127.0.0.1:{port}", process, log)
    try:
        if wait:
            wait_healthy(server, timeout)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.unlink(missing_ok=True)


def wait_healthy(server: Server, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"the server exited with {server.process.returncode}:\n{server.log_text()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{server.url}/health", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise TimeoutError(f"the server was not healthy within {timeout} s:\n{server.log_text()}")
