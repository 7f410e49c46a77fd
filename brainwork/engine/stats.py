"""Engine statistics: counters, gauges and latency samples, for logs and (later) Prometheus."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Observations:
    """Latency samples in seconds since the last `drain()`: a metrics exporter turns them into histograms."""

    time_to_first_token: list[float] = field(default_factory=list)
    inter_token_latency: list[float] = field(default_factory=list)
    e2e_latency: list[float] = field(default_factory=list)


@dataclass
class EngineStats:
    num_running: int = 0
    num_waiting: int = 0
    kv_cache_usage: float = 0.0  # fraction of KV blocks held by sequences
    prefix_cache_queries: int = 0  # prompt tokens looked up
    prefix_cache_hits: int = 0  # of those, found computed
    prompt_tokens: int = 0  # computed prompt tokens (prefix-cache hits excluded)
    generation_tokens: int = 0
    num_preemptions: int = 0
    steps: int = 0
    step_seconds: float = 0.0  # wall time inside step()
    forward_seconds: float = 0.0  # of which in the model's forward pass and logits
    finished: Counter[str] = field(default_factory=Counter)  # finish reason -> requests

    @property
    def prefix_cache_hit_rate(self) -> float:
        return self.prefix_cache_hits / self.prefix_cache_queries if self.prefix_cache_queries else 0.0

    @property
    def overhead_per_step(self) -> float:
        """The engine's own time per step: scheduling, batching, sampling, detokenizing."""
        return (self.step_seconds - self.forward_seconds) / self.steps if self.steps else 0.0


@dataclass
class StatsCollector:
    totals: EngineStats = field(default_factory=EngineStats)
    pending: Observations = field(default_factory=Observations)
    keep: int = 100_000  # cap on undrained samples, so an unread collector cannot grow forever

    def observe(self, kind: str, seconds: float) -> None:
        samples: list[float] = getattr(self.pending, kind)
        if len(samples) < self.keep:
            samples.append(seconds)

    def drain(self) -> Observations:
        out, self.pending = self.pending, Observations()
        return out
