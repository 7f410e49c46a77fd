"""llama.cpp (the `xllamacpp` wheel) as a reference: its own tokenizer and greedy decoding.

The server binds a free loopback port; we talk to it over its HTTP API because that is the
stable surface of llama.cpp (`/tokenize`, `/completion` with token-id prompts).
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path


class LlamaCpp:
    """A running llama.cpp server over one GGUF file; use as a context manager."""

    def __init__(self, gguf_path: str | Path, n_ctx: int = 2048, threads: int = 2) -> None:
        import xllamacpp

        params = xllamacpp.CommonParams()
        params.model.path = str(gguf_path)
        params.n_ctx = n_ctx
        params.n_parallel = 1
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
        params.warmup = False
        self._server = xllamacpp.Server(params)
        self.address = self._server.listening_address

    def _post(self, path: str, body: dict) -> dict:
        req = urllib.request.Request(
            self.address + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=600) as resp:
            return json.loads(resp.read())

    def tokenize(self, text: str, add_special: bool = False, parse_special: bool = True) -> list[int]:
        body = {"content": text, "add_special": add_special, "parse_special": parse_special}
        return self._post("/tokenize", body)["tokens"]

    def greedy(self, prompt_ids: list[int], max_tokens: int) -> list[int]:
        """Greedy continuation of a token-id prompt; stops early only at end of generation."""
        body = {
            "prompt": prompt_ids,
            "n_predict": max_tokens,
            "temperature": 0.0,
            "top_k": 1,
            "return_tokens": True,
            "cache_prompt": False,
            "ignore_eos": False,
        }
        return self._post("/completion", body)["tokens"]

    def close(self) -> None:
        del self._server

    def __enter__(self) -> LlamaCpp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
