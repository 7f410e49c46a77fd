"""The FastAPI application: routes, error handlers, keys, body limit, model loading on startup."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import Depends, FastAPI, Request, Response

import brainwork
from brainwork.server import routes_generate, routes_media, routes_other, routes_rag, routes_tasks
from brainwork.server.errors import install_error_handlers
from brainwork.server.limits import BodyLimit, KeyCheck
from brainwork.server.metrics import Metrics
from brainwork.server.state import ServerState

log = logging.getLogger("brainwork.server")


def build_app(state: ServerState, on_load_failure: Callable[[str], None] | None = None) -> FastAPI:
    """An app serving `state`; unless its models are loaded already, they load on startup in the
    background (`/health` says 503 until then)."""

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if not state.ready:
            state.load_in_background(on_load_failure)
        try:
            yield
        finally:
            state.shutdown()

    app = FastAPI(
        title="brainwork",
        version=brainwork.__version__,
        summary="OpenAI-compatible inference server",
        lifespan=lifespan,
    )
    install_error_handlers(app)

    @app.exception_handler(routes_generate._Gone)
    async def _gone(_: Request, __: Exception) -> Response:
        return Response(status_code=499)  # nginx's "client closed request": nobody reads it

    keys = [Depends(KeyCheck(state.config.api_keys))]
    app.include_router(routes_generate.build_router(state, keys))
    app.include_router(routes_other.build_router(state, keys))
    app.include_router(routes_tasks.build_router(state, keys))
    app.include_router(routes_rag.build_router(state, keys))
    app.include_router(routes_media.build_router(state, keys))  # speech models load on first use
    app.include_router(routes_other.build_open_router(state, Metrics(state)))
    app.add_middleware(BodyLimit, max_bytes=state.config.max_body_bytes)
    _without_422(app)
    return app


def _without_422(app: FastAPI) -> None:
    """Validation failures are answered with 400 (as OpenAI does): drop FastAPI's 422 entries."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            for operations in schema.get("paths", {}).values():
                for op in operations.values():
                    op.get("responses", {}).pop("422", None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
