"""`SamplingParams`: how one request is decoded, in vLLM's shape, validated on construction."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

MAX_LOGPROBS = 20  # as OpenAI's top_logprobs


@dataclass
class SamplingParams:
    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int | None = None  # None: all tokens
    min_p: float = 0.0
    seed: int | None = None
    max_tokens: int | None = 16  # None: up to the context window
    min_tokens: int = 0
    stop: list[str] = field(default_factory=list)
    stop_token_ids: list[int] = field(default_factory=list)
    ignore_eos: bool = False
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    logit_bias: dict[int, float] = field(default_factory=dict)
    skip_special_tokens: bool = True
    logprobs: int | None = None  # None: none; k: the chosen token's logprob and the k most likely
    # vLLM's prompt_logprobs: each prompt token's logprob given the tokens before it (and the k most
    # likely alternatives), from position `prompt_logprobs_start` on. The positions before it may be
    # served by the prefix cache, so scoring continuations of one shared passage computes it once.
    prompt_logprobs: int | None = None
    prompt_logprobs_start: int = 1
    # vLLM's hook: fn(output_token_ids, logits (V,)) -> logits, applied first in the chain
    logits_processors: list[Callable[[list[int], Any], Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        checks = [
            (isinstance(self.n, int) and self.n >= 1, "n", "must be an integer >= 1"),
            (self.temperature >= 0, "temperature", "must be >= 0"),
            (0 < self.top_p <= 1, "top_p", "must be in (0, 1]"),
            (
                self.top_k is None or (isinstance(self.top_k, int) and self.top_k >= 1),
                "top_k",
                "must be None or an integer >= 1",
            ),
            (0 <= self.min_p <= 1, "min_p", "must be in [0, 1]"),
            (
                self.max_tokens is None or (isinstance(self.max_tokens, int) and self.max_tokens >= 1),
                "max_tokens",
                "must be an integer >= 1",
            ),
            (isinstance(self.min_tokens, int) and self.min_tokens >= 0, "min_tokens", "must be an integer >= 0"),
            (self.max_tokens is None or self.min_tokens <= self.max_tokens, "min_tokens", "must not exceed max_tokens"),
            (-2 <= self.presence_penalty <= 2, "presence_penalty", "must be in [-2, 2]"),
            (-2 <= self.frequency_penalty <= 2, "frequency_penalty", "must be in [-2, 2]"),
            (self.repetition_penalty > 0, "repetition_penalty", "must be > 0"),
            (all(isinstance(s, str) and s for s in self.stop), "stop", "must be non-empty strings"),
            (
                all(isinstance(t, int) and t >= 0 for t in self.stop_token_ids),
                "stop_token_ids",
                "must be token ids >= 0",
            ),
            (
                self.logprobs is None or (isinstance(self.logprobs, int) and 0 <= self.logprobs <= MAX_LOGPROBS),
                "logprobs",
                f"must be None or an integer in [0, {MAX_LOGPROBS}]",
            ),
            (
                self.prompt_logprobs is None
                or (isinstance(self.prompt_logprobs, int) and 0 <= self.prompt_logprobs <= MAX_LOGPROBS),
                "prompt_logprobs",
                f"must be None or an integer in [0, {MAX_LOGPROBS}]",
            ),
            (
                isinstance(self.prompt_logprobs_start, int) and self.prompt_logprobs_start >= 1,
                "prompt_logprobs_start",
                "must be an integer >= 1 (the first token has nothing before it)",
            ),
            (all(callable(f) for f in self.logits_processors), "logits_processors", "must be callables"),
            (
                all(isinstance(t, int) and isinstance(b, (int, float)) for t, b in self.logit_bias.items()),
                "logit_bias",
                "must map token ids to numbers",
            ),
        ]
        for ok, name, rule in checks:
            if not ok:
                raise ValueError(f"{name} {rule}, got {getattr(self, name)!r}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0 or self.top_k == 1
