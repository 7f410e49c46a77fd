"""The shared workload of the engine benchmarks: requests drawn with a fixed seed.

Prompts are random token ids from the ordinary part of the vocabulary (no special tokens) so that
every engine sees exactly the same ids; every request runs to its `max_tokens` (`ignore_eos`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class BenchRequest:
    prompt_ids: list[int]
    max_tokens: int


def draw_requests(
    n: int,
    vocab_size: int,
    prompt_len: tuple[int, int] = (32, 512),
    output_len: tuple[int, int] = (32, 256),
    seed: int = 0,
    special_ids: frozenset[int] = frozenset(),
) -> list[BenchRequest]:
    rng = random.Random(seed)
    low, high = 1000, vocab_size - 1000  # stay clear of the control tokens at either end
    out = []
    for _ in range(n):
        plen, olen = rng.randint(*prompt_len), rng.randint(*output_len)
        ids = [t for t in (rng.randint(low, high) for _ in range(plen * 2)) if t not in special_ids][:plen]
        out.append(BenchRequest(ids, olen))
    return out
