"""What the server serves: the chat model on its async engine, the embedding model, the limits.

Models load on a background thread after the port is open, so `/health` can answer 503 while
they load (orchestrators and load balancers wait on it) instead of the port being closed.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from brainwork.server.errors import APIError
from brainwork.server.limits import Admission

if TYPE_CHECKING:
    from brainwork.engine.async_engine import AsyncLLMEngine
    from brainwork.engine.encoder import EncoderRunner
    from brainwork.llm import LLM
    from brainwork.server.tasks import TaskModels

log = logging.getLogger("brainwork.server")


@dataclass
class ServerConfig:
    model: str | None = None  # None: the default chat model
    embedding_model: str | None = None  # None: the default embedding model; "none": no embeddings
    classifier_model: str | None = None  # /classify; None: the embedding model; "none": no /classify
    rerank_model: str | None = None  # /v1/rerank and /v1/score; None: the embedding model; "none": off
    encoder_dtype: str = "auto"  # every encoder above (brainwork.engine.encoder.encoder_dtype)
    served_model_name: str | None = None
    api_keys: list[str] = field(default_factory=list)
    max_concurrent: int = 64
    max_queue: int = 256
    max_body_bytes: int = 8 * 2**20
    engine_args: dict[str, Any] = field(default_factory=dict)  # LLM(...) keyword arguments


class ServerState:
    def __init__(self, config: ServerConfig) -> None:
        from brainwork.catalog import DEFAULT_CHAT_MODEL, DEFAULT_EMBEDDING_MODEL

        self.config = config
        self.chat_source = config.model or DEFAULT_CHAT_MODEL
        self.chat_name = config.served_model_name or self.chat_source
        embed = config.embedding_model or DEFAULT_EMBEDDING_MODEL
        self.embed_name: str | None = None if embed.lower() == "none" else embed
        self.classifier_name = _task_model(config.classifier_model, self.embed_name)
        self.rerank_name = _task_model(config.rerank_model, self.embed_name)
        self.created = int(time.time())
        self.generation = Admission(config.max_concurrent, config.max_queue)
        self.embedding = Admission(config.max_concurrent, config.max_queue)
        self.llm: LLM | None = None
        self.engine: AsyncLLMEngine | None = None
        self.encoder: EncoderRunner | None = None
        self.tasks: TaskModels | None = None
        self.load_error: str | None = None
        self._ready = threading.Event()
        self._encoder_thread = ThreadPoolExecutor(1, thread_name_prefix="brainwork-embed")  # one forward at a time

    # ---- loading ---------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def load(self) -> None:
        """Load the models and start the engine loop (blocking; call from a thread)."""
        from brainwork.engine.async_engine import AsyncLLMEngine
        from brainwork.llm import LLM
        from brainwork.pipelines.embeddings import load_encoder
        from brainwork.server.tasks import TaskModels

        t0 = time.perf_counter()
        args = {"progress": False, **self.config.engine_args}
        self.llm = LLM(self.chat_source, **args)
        log.info("chat model %s loaded (context %d tokens)", self.chat_name, self.llm.max_model_len)
        if self.embed_name is not None:
            self.encoder = load_encoder(self.embed_name, dtype=self.config.encoder_dtype)
            log.info("embedding model %s loaded (%s)", self.embed_name, str(self.encoder.dtype).removeprefix("torch."))
        shared = {self.embed_name: self.encoder} if self.encoder is not None and self.embed_name else {}
        self.tasks = TaskModels.load(self.classifier_name, self.rerank_name, shared, self.config.encoder_dtype)
        self.engine = AsyncLLMEngine(self.llm.engine)
        self.engine.start()
        self._ready.set()
        log.info("ready in %.1f s", time.perf_counter() - t0)

    def load_in_background(self, on_failure: Callable[[str], None] | None = None) -> threading.Thread:
        def run() -> None:
            try:
                self.load()
            except Exception as e:  # reported through /health and the log; the CLI exits
                self.load_error = f"{type(e).__name__}: {e}"
                log.error("loading failed: %s", self.load_error)
                if on_failure is not None:
                    on_failure(self.load_error)

        thread = threading.Thread(target=run, name="brainwork-load", daemon=True)
        thread.start()
        return thread

    def shutdown(self) -> None:
        if self.engine is not None:
            self.engine.shutdown()
        self._encoder_thread.shutdown(wait=False, cancel_futures=True)

    # ---- access for the routes ---------------------------------------------------------------
    def require_ready(self) -> None:
        if not self.ready:
            message = f"model failed to load: {self.load_error}" if self.load_error else "the model is still loading"
            raise APIError(503, message, "server_error", code="model_loading", headers={"Retry-After": "5"})

    def chat(self, model: str | None) -> tuple[LLM, AsyncLLMEngine]:
        """The chat model and engine, after checking that `model` names it."""
        self.require_ready()
        if model is not None and model != self.chat_name:
            if model == self.embed_name:
                raise APIError(400, f"model {model!r} is an embedding model; use /v1/embeddings", param="model")
            raise self._unknown(model)
        assert self.llm is not None and self.engine is not None
        return self.llm, self.engine

    def embedder(self, model: str | None) -> EncoderRunner:
        self.require_ready()
        if self.encoder is None:
            raise APIError(
                404,
                "this server has no embedding model (started with --embedding-model none)",
                param="model",
                code="model_not_found",
            )
        if model is not None and model != self.embed_name:
            if model == self.chat_name:
                raise APIError(
                    400, f"model {model!r} is a chat model; embeddings come from {self.embed_name!r}", param="model"
                )
            raise self._unknown(model)
        return self.encoder

    async def run_encoder(self, fn: Callable[[], Any]) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._encoder_thread, fn)

    def task_model(self, model: str | None, task: str) -> TaskModels:
        """The task models, after checking that `model` names the one serving `task`
        ("classify" or "rerank")."""
        self.require_ready()
        assert self.tasks is not None
        name = self.tasks.classifier_name if task == "classify" else self.tasks.pair_name
        if name is None:
            flag = "--classifier-model" if task == "classify" else "--rerank-model"
            raise APIError(404, f"this server has no {task} model (started with {flag} none)", param="model")
        if model is not None and model != name:
            if model in self.model_names():
                raise APIError(400, f"model {model!r} does not serve {task}; {name!r} does", param="model")
            raise self._unknown(model)
        return self.tasks

    def model_names(self) -> list[str]:
        names = [self.chat_name] + ([self.embed_name] if self.embed_name else [])
        for name in (self.classifier_name, self.rerank_name):
            if name is not None and name not in names:
                names.append(name)
        return names

    def _unknown(self, model: str) -> APIError:
        return APIError(
            404,
            f"the model {model!r} does not exist on this server; it serves {', '.join(map(repr, self.model_names()))}",
            param="model",
            code="model_not_found",
        )


def _task_model(chosen: str | None, embed_name: str | None) -> str | None:
    if chosen is None:
        return embed_name
    return None if chosen.lower() == "none" else chosen
