"""`LLMEngine`: the one loop. schedule -> run the model -> sample -> update -> detokenize.

Requests are added and aborted between steps; `step()` returns a `RequestOutput` delta for every
request that made progress (new tokens, or finished). A request that fails inside the engine (a
user's logits processor raising, say) finishes alone with `error` set; the others go on.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from brainwork.config import EngineConfig
from brainwork.engine.block_manager import BlockManager
from brainwork.engine.model_runner import ModelRunner, PromptRows
from brainwork.engine.paged_cache import PagedKVCache
from brainwork.engine.sampler import SampledToken, SamplingRow, sample_batch
from brainwork.engine.scheduler import Scheduler
from brainwork.engine.sequence import Sequence, SequenceStatus
from brainwork.engine.stats import EngineStats, StatsCollector
from brainwork.models.config import ModelConfig
from brainwork.outputs import CompletionOutput, Logprob, RequestMetrics, RequestOutput
from brainwork.sampling_params import SamplingParams
from brainwork.tokenizer.detokenizer import IncrementalDetokenizer
from brainwork.tokenizer.tokenizer import Tokenizer

log = logging.getLogger("brainwork.engine")


@dataclass(eq=False)
class _Sample:
    """One of a request's `n` completions."""

    index: int
    seq: Sequence
    detok: IncrementalDetokenizer
    generator: torch.Generator
    max_new: int
    finish_reason: str | None = None
    stop_reason: int | str | None = None
    new_text: str = ""  # produced since the last output
    new_ids: list[int] = field(default_factory=list)
    new_logprobs: list[dict[int, Logprob]] = field(default_factory=list)
    cumulative_logprob: float = 0.0
    last_token_time: float | None = None
    reported_finish: bool = False


@dataclass(eq=False)
class _Request:
    request_id: str
    prompt: str | None
    prompt_ids: list[int]
    params: SamplingParams
    samples: list[_Sample]
    metrics: RequestMetrics
    error: str | None = None
    # by prompt position when prompt_logprobs is asked for; filled as prefill chunks run (a
    # recompute after preemption fills the same places again)
    prompt_logprobs: list[dict[int, Logprob] | None] | None = None
    prompt_logprobs_sent: bool = False

    @property
    def finished(self) -> bool:
        return all(s.seq.status.finished for s in self.samples)


class LLMEngine:
    def __init__(self, model: nn.Module, model_config: ModelConfig, tokenizer: Tokenizer, config: EngineConfig) -> None:
        self.model, self.model_config, self.tokenizer, self.config = model, model_config, tokenizer, config
        first = next(model.parameters(), None)  # None: every weight is a buffer (GGUF blocks, file rows)
        dtype = torch.float32 if first is None else first.dtype
        if not dtype.is_floating_point:  # quantized weights: keep the cache in float32
            dtype = torch.float32
        ggml = getattr(model, "ggml_attention", None)  # llama.cpp's arithmetic: float16 cache, its attention
        if ggml is not None:
            dtype = torch.float16
        cfg = model_config
        per_block = PagedKVCache.bytes_per_block(
            cfg.num_layers, config.block_size, cfg.num_kv_heads, cfg.head_dim, dtype
        )
        num_blocks = config.num_blocks(per_block)
        if num_blocks * config.block_size < config.max_model_len:
            raise ValueError(
                f"the KV cache holds {num_blocks * config.block_size} tokens, fewer than max_model_len="
                f"{config.max_model_len}: raise kv_cache_gib or lower max_model_len"
            )
        self.cache = PagedKVCache(cfg.num_layers, num_blocks, config.block_size, cfg.num_kv_heads, cfg.head_dim, dtype)
        if ggml is not None:
            self.cache.ggml_order = ggml if isinstance(ggml, torch.Tensor) else None
            self.cache.ggml = True
        self.block_manager = BlockManager(num_blocks, config.block_size, config.enable_prefix_caching)
        self.scheduler = Scheduler(self.block_manager, config.max_num_seqs, config.max_num_batched_tokens)
        if ggml is not None and any(w is not None for w in cfg.layer_windows):
            self.scheduler.prompt_tail = 4  # as the llama.cpp server splits prompts of sliding-window models
        self.runner = ModelRunner(model, self.cache)
        self.stats = StatsCollector()
        self.eos_ids = frozenset(tokenizer.eos_token_ids)
        self._requests: dict[str, _Request] = {}
        self._by_seq: dict[int, tuple[_Request, _Sample]] = {}
        self._next_seq, self._arrivals = 0, 0
        self._seed_source = random.Random()
        log.info(
            "KV cache: %d blocks of %d tokens (%.2f GiB), prefix caching %s",
            num_blocks,
            config.block_size,
            num_blocks * per_block / 2**30,
            "on" if config.enable_prefix_caching else "off",
        )

    # ---- requests ----------------------------------------------------------------------------
    def check_request(self, prompt_ids: list[int], params: SamplingParams) -> None:
        """Raise ValueError naming the field when a request cannot run; nothing is queued."""
        vocab, window = self.model_config.vocab_size, self.config.max_model_len
        if not prompt_ids:
            raise ValueError("prompt: empty prompt (no tokens to start from)")
        if len(prompt_ids) >= window:
            raise ValueError(
                f"prompt: {len(prompt_ids)} tokens does not fit the context window of {window} tokens "
                "(at least one token must be left to generate)"
            )
        for name, ids in (
            ("prompt", prompt_ids),
            ("logit_bias", list(params.logit_bias)),
            ("stop_token_ids", params.stop_token_ids),
        ):
            bad = [t for t in ids if not (isinstance(t, int) and 0 <= t < vocab)]
            if bad:
                raise ValueError(f"{name}: token ids {bad[:5]} are outside the vocabulary of {vocab}")

    def add_request(
        self,
        request_id: str,
        prompt_ids: list[int],
        params: SamplingParams,
        prompt: str | None = None,
        priority: int = 0,
        arrival_time: float | None = None,
    ) -> None:
        if request_id in self._requests:
            raise ValueError(f"request_id: {request_id!r} is already running")
        self.check_request(prompt_ids, params)
        metrics = RequestMetrics(arrival_time=arrival_time if arrival_time is not None else time.perf_counter())
        req = _Request(request_id, prompt, list(prompt_ids), params, [], metrics)
        if params.prompt_logprobs is not None:
            req.prompt_logprobs = [None] * len(prompt_ids)
        budget = self.config.max_model_len - len(prompt_ids)
        max_new = budget if params.max_tokens is None else min(params.max_tokens, budget)
        first: Sequence | None = None
        for i in range(params.n):
            seq = Sequence(self._next_seq, list(prompt_ids), len(prompt_ids), self._arrivals, priority)
            self._next_seq += 1
            if first is not None and self.config.enable_prefix_caching:
                seq.wait_for = first  # share the first sample's prompt blocks instead of recomputing
            if first is None and params.prompt_logprobs is not None:
                seq.score_from = params.prompt_logprobs_start  # the other samples share its blocks
            first = first or seq
            # any int seed: torch's generator takes 64 bits, so wrap (sample i of n gets seed + i)
            seed = (params.seed + i) % 2**64 if params.seed is not None else self._seed_source.getrandbits(63)
            detok = IncrementalDetokenizer(self.tokenizer, params.stop, params.skip_special_tokens)
            sample = _Sample(i, seq, detok, torch.Generator().manual_seed(seed), max_new)
            req.samples.append(sample)
            self._by_seq[seq.seq_id] = (req, sample)
            self.scheduler.add(seq)
        self._arrivals += 1
        self._requests[request_id] = req

    def abort_request(self, request_id: str) -> RequestOutput | None:
        """Stop a request now and free its KV blocks; returns its final output (None if unknown)."""
        req = self._requests.get(request_id)
        if req is None:
            return None
        for s in req.samples:
            if not s.seq.status.finished:
                self._finish(req, s, SequenceStatus.FINISHED_ABORTED)
        return self._output(req)

    def has_unfinished_requests(self) -> bool:
        return bool(self._requests)

    def request_ids(self) -> list[str]:
        return list(self._requests)

    @property
    def num_requests(self) -> int:
        return len(self._requests)

    # ---- the loop ------------------------------------------------------------------------------
    def step(self) -> list[RequestOutput]:
        start = time.perf_counter()
        sched = self.scheduler.schedule()
        if not sched.chunks:
            return []
        touched: dict[str, _Request] = {}
        for chunk in sched.chunks:
            req, _ = self._by_seq[chunk.seq.seq_id]
            if req.metrics.first_scheduled_time is None:
                req.metrics.first_scheduled_time = start
                req.metrics.num_cached_tokens = chunk.start
            if chunk.start < chunk.seq.num_prompt_tokens:
                self.stats.totals.prompt_tokens += min(chunk.num_tokens, chunk.seq.num_prompt_tokens - chunk.start)
        for seq in sched.preempted:
            self._by_seq[seq.seq_id][0].metrics.num_preemptions += 1
        sampling = [c for c in sched.chunks if c.samples]
        forward_before = self.runner.forward_seconds
        try:
            logits, prompt_rows = self.runner.execute(sched.chunks)
        except Exception as e:  # cannot tell whose input broke the batch: fail the batch, keep the loop
            log.exception("forward pass failed; failing the %d requests in this batch", len(sched.chunks))
            for chunk in sched.chunks:
                req, _ = self._by_seq[chunk.seq.seq_id]
                self._fail(req, f"forward pass failed: {type(e).__name__}: {e}")
                touched[req.request_id] = req
            return self._collect(touched, start, forward_before)
        for pr in prompt_rows:
            self._record_prompt_logprobs(pr)
        rows = [self._sampling_row(c.seq) for c in sampling]
        result = sample_batch(logits, rows)
        sampled: dict[int, int] = {}
        for c, tok in zip(sampling, result.tokens, strict=True):
            if tok is not None:
                sampled[c.seq.seq_id] = tok.token_id
        self.scheduler.update(sched, sampled)
        now = time.perf_counter()
        for i, c in enumerate(sampling):
            req, sample = self._by_seq[c.seq.seq_id]
            touched[req.request_id] = req
            if i in result.errors:
                self._fail(req, result.errors[i])
            elif not sample.seq.status.finished:
                self._accept(req, sample, result.tokens[i], now)
        return self._collect(touched, start, forward_before)

    def _record_prompt_logprobs(self, rows: PromptRows) -> None:
        """Each scored prompt token's logprob under the raw model (no penalties or processors, as vLLM)."""
        req, _ = self._by_seq[rows.chunk.seq.seq_id]
        assert req.prompt_logprobs is not None
        k = req.params.prompt_logprobs or 0
        lp = torch.log_softmax(rows.logits.float(), dim=-1)  # (m, V)
        m = lp.shape[0]
        targets = torch.tensor(rows.chunk.seq.token_ids[rows.first : rows.first + m])  # (m,)
        chosen = lp.gather(1, targets[:, None])[:, 0]  # (m,)
        ranks = (lp > chosen[:, None]).sum(dim=-1) + 1  # (m,) 1 = the most likely token
        top = lp.topk(k, dim=-1) if k else None
        for i in range(m):
            alternatives = (
                list(zip(top.indices[i].tolist(), top.values[i].tolist(), strict=True)) if top is not None else []
            )
            entry = self._logprob_entry(int(targets[i]), float(chosen[i]), int(ranks[i]), alternatives)
            req.prompt_logprobs[rows.first + i] = entry

    def _logprob_entry(
        self, token: int, logprob: float, rank: int | None, top: list[tuple[int, float]]
    ) -> dict[int, Logprob]:
        """{token: Logprob} with the chosen token first, then the alternatives it is not among."""
        decode = self.tokenizer.decode
        entry = {token: Logprob(logprob, rank, decode([token], skip_special_tokens=False))}
        for tid, lp in top:
            if tid not in entry:
                entry[tid] = Logprob(lp, None, decode([tid], skip_special_tokens=False))
        return entry

    def _sampling_row(self, seq: Sequence) -> SamplingRow:
        req, sample = self._by_seq[seq.seq_id]
        p = req.params
        blocked: list[int] = []
        if seq.num_output_tokens < p.min_tokens:
            blocked = sorted((set() if p.ignore_eos else set(self.eos_ids)) | set(p.stop_token_ids))
        return SamplingRow(p, seq.token_ids, seq.num_prompt_tokens, sample.generator, blocked)

    def _accept(self, req: _Request, s: _Sample, tok: SampledToken | None, now: float) -> None:
        """Take one sampled token: timing, logprobs, detokenization, stop rules."""
        assert tok is not None
        p, seq, token = req.params, s.seq, tok.token_id
        if s.last_token_time is None:
            if req.metrics.first_token_time is None:
                req.metrics.first_token_time = now
                self.stats.observe("time_to_first_token", now - req.metrics.arrival_time)
        else:
            self.stats.observe("inter_token_latency", now - s.last_token_time)
        s.last_token_time = req.metrics.last_token_time = now
        self.stats.totals.generation_tokens += 1
        s.new_ids.append(token)
        if tok.logprob is not None:
            s.cumulative_logprob += tok.logprob
            s.new_logprobs.append(self._logprob_entry(token, tok.logprob, tok.rank, tok.top or []))
        count = seq.num_output_tokens
        may_stop = count >= p.min_tokens
        if (token in self.eos_ids and not p.ignore_eos) or token in p.stop_token_ids:
            s.new_text += s.detok.flush()
            s.stop_reason = token if token in p.stop_token_ids else None
            self._finish(req, s, SequenceStatus.FINISHED_STOPPED)
            return
        s.new_text += s.detok.push(token, check_stop=may_stop)
        if s.detok.stopped_by is not None:
            s.stop_reason = s.detok.stopped_by
            self._finish(req, s, SequenceStatus.FINISHED_STOPPED)
        elif count >= s.max_new:
            s.new_text += s.detok.flush()
            self._finish(req, s, SequenceStatus.FINISHED_LENGTH)

    def _finish(self, req: _Request, s: _Sample, status: SequenceStatus) -> None:
        self.scheduler.finish(s.seq, status)
        s.finish_reason = status.value

    def _fail(self, req: _Request, message: str) -> None:
        log.warning("request %s failed: %s", req.request_id, message)
        req.error = message
        for s in req.samples:
            if not s.seq.status.finished:
                self._finish(req, s, SequenceStatus.FINISHED_ERROR)

    def _collect(self, touched: dict[str, _Request], start: float, forward_before: float) -> list[RequestOutput]:
        outputs = [self._output(req) for req in touched.values()]
        t = self.stats.totals
        t.steps += 1
        t.step_seconds += time.perf_counter() - start
        t.forward_seconds += self.runner.forward_seconds - forward_before
        return outputs

    def _output(self, req: _Request) -> RequestOutput:
        """The request's delta since its last output; a finished request leaves the engine."""
        completions = []
        for s in req.samples:
            if s.new_ids or s.new_text or (s.finish_reason and not s.reported_finish):
                want_lp = req.params.logprobs is not None
                completions.append(
                    CompletionOutput(
                        s.index,
                        s.new_text,
                        s.new_ids,
                        s.finish_reason,
                        s.stop_reason,
                        s.cumulative_logprob if want_lp else None,
                        s.new_logprobs if want_lp else None,
                    )
                )
                s.new_text, s.new_ids, s.new_logprobs = "", [], []
                s.reported_finish = s.finish_reason is not None
        finished = req.finished
        prompt_logprobs = None
        prompt_done = finished or req.samples[0].seq.num_output_tokens > 0
        if req.prompt_logprobs is not None and not req.prompt_logprobs_sent and prompt_done:
            prompt_logprobs, req.prompt_logprobs_sent = req.prompt_logprobs, True
        if finished and req.request_id in self._requests:
            req.metrics.finished_time = time.perf_counter()
            self.stats.observe("e2e_latency", req.metrics.finished_time - req.metrics.arrival_time)
            reason = "error" if req.error else (req.samples[0].finish_reason or "stop")
            self.stats.totals.finished[reason] += 1
            del self._requests[req.request_id]
            for s in req.samples:
                self._by_seq.pop(s.seq.seq_id, None)
        return RequestOutput(
            req.request_id, req.prompt, req.prompt_ids, completions, finished, req.metrics, req.error, prompt_logprobs
        )

    def get_stats(self) -> EngineStats:
        t = self.stats.totals
        t.num_running, t.num_waiting = len(self.scheduler.running), len(self.scheduler.waiting)
        t.kv_cache_usage = self.block_manager.usage
        t.prefix_cache_queries = self.block_manager.counters.queries
        t.prefix_cache_hits = self.block_manager.counters.hits
        t.num_preemptions = self.scheduler.num_preemptions
        return t
