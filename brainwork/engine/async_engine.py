"""`AsyncLLMEngine`: the engine loop on a background thread, driven from asyncio (the server).

The loop thread owns the `LLMEngine`; other threads talk to it only through a command queue
(add, abort), applied between steps. Each request has an `asyncio.Queue` on the caller's event
loop that the engine thread feeds with `call_soon_threadsafe`. If the caller stops iterating
(a client hung up and its task was cancelled), the request is aborted and its KV blocks are
freed before the next step. The forward pass runs in torch with the GIL released, so the event
loop stays responsive while the model computes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass

from brainwork.engine.engine import LLMEngine
from brainwork.engine.stats import EngineStats, Observations
from brainwork.outputs import RequestOutput
from brainwork.sampling_params import SamplingParams

log = logging.getLogger("brainwork.engine")


class EngineDeadError(RuntimeError):
    """The engine loop is not running (shut down, or never started)."""


@dataclass
class _Add:
    request_id: str
    prompt_ids: list[int]
    params: SamplingParams
    prompt: str | None
    priority: int
    arrival: float
    sink: tuple[asyncio.AbstractEventLoop, asyncio.Queue]


@dataclass
class _Abort:
    request_id: str


class AsyncLLMEngine:
    def __init__(self, engine: LLMEngine) -> None:
        self.engine = engine
        self._commands: queue.SimpleQueue[_Add | _Abort | None] = queue.SimpleQueue()
        self._sinks: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = {}
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None
        self._stats = EngineStats()
        self._observations = Observations()
        self._stats_lock = threading.Lock()

    # ---- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, name="brainwork-engine", daemon=True)
            self._thread.start()

    def shutdown(self, timeout: float = 10.0) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._commands.put(None)
            self._thread.join(timeout)
        self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ---- requests ----------------------------------------------------------------------------------
    async def generate(
        self,
        prompt_ids: list[int],
        params: SamplingParams,
        *,
        request_id: str | None = None,
        prompt: str | None = None,
        priority: int = 0,
    ) -> AsyncIterator[RequestOutput]:
        """Yield the request's `RequestOutput` deltas; raises ValueError at once for bad input."""
        if not self.running:
            raise EngineDeadError("the engine loop is not running")
        self.engine.check_request(prompt_ids, params)  # pure checks: safe off the engine thread
        rid = request_id or f"req-{next(self._ids)}"
        sink: asyncio.Queue[RequestOutput | BaseException] = asyncio.Queue()
        self._commands.put(
            _Add(rid, prompt_ids, params, prompt, priority, time.perf_counter(), (asyncio.get_running_loop(), sink))
        )
        finished = False
        try:
            while not finished:
                item = await sink.get()
                if isinstance(item, BaseException):
                    raise item
                finished = item.finished
                yield item
        finally:
            if not finished:  # the consumer went away: stop the work now
                self._commands.put(_Abort(rid))

    def abort(self, request_id: str) -> None:
        self._commands.put(_Abort(request_id))

    def get_stats(self) -> EngineStats:
        with self._stats_lock:
            return self._stats

    def drain_observations(self) -> Observations:
        """Latency samples since the last call (for a metrics exporter's histograms)."""
        with self._stats_lock:
            out, self._observations = self._observations, Observations()
        return out

    # ---- the engine thread --------------------------------------------------------------------------
    def _loop(self) -> None:
        log.info("engine loop started")
        while True:
            idle = not self.engine.has_unfinished_requests()
            try:
                # block while idle; otherwise just drain what came in during the last step
                cmd = self._commands.get(timeout=0.5) if idle else self._commands.get_nowait()
            except queue.Empty:
                cmd = _Empty
            if cmd is None:
                break
            if cmd is not _Empty:
                self._apply(cmd)
                if self._commands.empty():  # an abort frees blocks now: let the gauges say so
                    self._publish_stats()
                continue  # drain every pending command before the next step
            if idle:
                continue
            try:
                outputs = self.engine.step()
            except Exception as e:  # never let one bad step kill the loop
                log.exception("engine step failed; failing the running requests")
                outputs = self._fail_all(e)
            for out in outputs:
                self._deliver(out.request_id, out, out.finished)
            self._publish_stats()
        for rid in list(self._sinks):
            self._deliver(rid, EngineDeadError("the engine was shut down"), True)
        log.info("engine loop stopped")

    def _publish_stats(self) -> None:
        live = self.engine.get_stats()  # the engine keeps mutating it: readers get a copy
        stats = dataclasses.replace(live, finished=Counter(live.finished))
        fresh = self.engine.stats.drain()
        with self._stats_lock:
            self._stats = stats
            for kind in ("time_to_first_token", "inter_token_latency", "e2e_latency"):
                samples: list[float] = getattr(self._observations, kind)
                samples.extend(getattr(fresh, kind)[: self.engine.stats.keep - len(samples)])

    def _apply(self, cmd: _Add | _Abort) -> None:
        if isinstance(cmd, _Add):
            try:
                self.engine.add_request(
                    cmd.request_id, cmd.prompt_ids, cmd.params, cmd.prompt, cmd.priority, cmd.arrival
                )
                self._sinks[cmd.request_id] = cmd.sink
            except Exception as e:
                loop, q = cmd.sink
                loop.call_soon_threadsafe(q.put_nowait, e)
        else:
            out = self.engine.abort_request(cmd.request_id)
            if out is not None:
                self._deliver(cmd.request_id, out, True)

    def _fail_all(self, error: Exception) -> list[RequestOutput]:
        outputs = []
        for rid in self.engine.request_ids():
            out = self.engine.abort_request(rid)
            if out is not None:
                out.error = f"engine step failed: {type(error).__name__}: {error}"
                outputs.append(out)
        return outputs

    def _deliver(self, rid: str, item: RequestOutput | BaseException, last: bool) -> None:
        sink = self._sinks.pop(rid, None) if last else self._sinks.get(rid)
        if sink is not None:
            loop, q = sink
            with contextlib.suppress(RuntimeError):  # RuntimeError: the caller's event loop is closed
                loop.call_soon_threadsafe(q.put_nowait, item)


_Empty = object()
