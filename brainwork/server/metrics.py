"""`GET /metrics` in Prometheus' text format, named as vLLM names them (with a `brainwork_` prefix).

Gauges and counters are read from the engine's published stats when scraped; the latency
histograms are fed at scrape time from the samples the engine collected since the last scrape.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from brainwork.server.state import ServerState

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0)
_TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0)
_ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0)


class _EngineCollector(Collector):
    def __init__(self, state: ServerState) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        s = self.state
        model = s.chat_name
        yield _gauge("brainwork_model_loaded", "1 once the models are loaded and the engine runs", model, s.ready)
        yield _gauge("brainwork_server_requests_active", "HTTP requests doing model work", model, s.generation.active)
        yield _gauge(
            "brainwork_server_requests_queued",
            "HTTP requests waiting for a turn (--max-queue)",
            model,
            s.generation.queued,
        )
        yield _counter(
            "brainwork_server_requests_rejected",
            "requests refused with 429 because the queue was full",
            model,
            s.generation.rejected + s.embedding.rejected,
        )
        if s.engine is None:
            return
        st = s.engine.get_stats()
        yield _gauge("brainwork_num_requests_running", "sequences in the engine's running batch", model, st.num_running)
        yield _gauge("brainwork_num_requests_waiting", "sequences waiting in the engine", model, st.num_waiting)
        yield _gauge(
            "brainwork_kv_cache_usage_perc", "fraction of KV-cache blocks in use (0-1)", model, st.kv_cache_usage
        )
        yield _counter(
            "brainwork_prefix_cache_queries",
            "prompt tokens looked up in the prefix cache",
            model,
            st.prefix_cache_queries,
        )
        yield _counter(
            "brainwork_prefix_cache_hits", "prompt tokens found in the prefix cache", model, st.prefix_cache_hits
        )
        yield _counter(
            "brainwork_prompt_tokens", "prompt tokens computed (prefix-cache hits excluded)", model, st.prompt_tokens
        )
        yield _counter("brainwork_generation_tokens", "tokens generated", model, st.generation_tokens)
        yield _counter("brainwork_num_preemptions", "sequences preempted for KV blocks", model, st.num_preemptions)
        outcomes = CounterMetricFamily(
            "brainwork_request_success", "finished requests by finish reason", labels=["model_name", "finished_reason"]
        )
        for reason in ("stop", "length", "abort", "error"):
            outcomes.add_metric([model, reason], st.finished.get(reason, 0))
        yield outcomes


def _gauge(name: str, doc: str, model: str, value: float) -> GaugeMetricFamily:
    g = GaugeMetricFamily(name, doc, labels=["model_name"])
    g.add_metric([model], float(value))
    return g


def _counter(name: str, doc: str, model: str, value: float) -> CounterMetricFamily:
    c = CounterMetricFamily(name, doc, labels=["model_name"])
    c.add_metric([model], float(value))
    return c


class Metrics:
    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.registry = CollectorRegistry()
        self.registry.register(_EngineCollector(state))
        labels = ["model_name"]
        self.ttft = Histogram(
            "brainwork_time_to_first_token_seconds",
            "time from arrival to the first token",
            labels,
            buckets=_TTFT_BUCKETS,
            registry=self.registry,
        )
        self.itl = Histogram(
            "brainwork_inter_token_latency_seconds",
            "time between a sequence's tokens",
            labels,
            buckets=_ITL_BUCKETS,
            registry=self.registry,
        )
        self.e2e = Histogram(
            "brainwork_e2e_request_latency_seconds",
            "time from arrival to the last token",
            labels,
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )

    def render(self) -> bytes:
        if self.state.engine is not None:
            obs = self.state.engine.drain_observations()
            name = self.state.chat_name
            for hist, samples in (
                (self.ttft, obs.time_to_first_token),
                (self.itl, obs.inter_token_latency),
                (self.e2e, obs.e2e_latency),
            ):
                child = hist.labels(name)
                for v in samples:
                    child.observe(v)
        return generate_latest(self.registry)
