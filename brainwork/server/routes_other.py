"""Embeddings, models, tokenizer and health routes."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

import brainwork
from brainwork.server.errors import APIError, bad_request, error_body, from_value_error
from brainwork.server.generation import ClientGone, chat_messages, until_disconnect
from brainwork.server.metrics import Metrics
from brainwork.server.protocol import ERROR_RESPONSES, DetokenizeRequest, EmbeddingRequest, TokenizeRequest
from brainwork.server.state import ServerState

MAX_EMBEDDING_INPUTS = 2048  # as OpenAI


def build_router(state: ServerState, dependencies: list[Any]) -> APIRouter:
    router = APIRouter(dependencies=dependencies, responses=ERROR_RESPONSES)

    @router.post("/v1/embeddings", tags=["openai"], summary="Sentence embeddings (OpenAI shape)")
    async def embeddings(body: EmbeddingRequest, request: Request) -> Response:
        encoder = state.embedder(body.model)
        texts = _texts(body.input)
        width = encoder.config.hidden_size * len(encoder.pooling_modes or ("mean",))
        if body.dimensions is not None and body.dimensions > width:
            raise bad_request(
                f"dimensions: the model makes {width}-dimensional vectors, got {body.dimensions}", "dimensions"
            )

        def work() -> tuple[np.ndarray, list[int]]:
            try:
                vectors = encoder.embed(texts).float().numpy()  # (N, D)
            except ValueError as e:
                raise from_value_error(e) from None
            return vectors, [min(n, encoder.max_length) for n in encoder.token_lengths(texts)]

        async def admitted() -> tuple[np.ndarray, list[int]]:
            await state.embedding.acquire()
            try:
                return await state.run_encoder(work)
            finally:
                state.embedding.release()

        try:
            vectors, lengths = await until_disconnect(request, admitted())
        except ClientGone:
            return Response(status_code=499)
        if body.dimensions is not None and body.dimensions < width:
            vectors = vectors[:, : body.dimensions]
            if encoder.normalize:  # a shortened unit vector is renormalised, as OpenAI's are
                vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        data = [
            {"object": "embedding", "index": i, "embedding": _encode(v, body.encoding_format)}
            for i, v in enumerate(vectors)
        ]
        tokens = sum(lengths)
        return JSONResponse(
            {
                "object": "list",
                "data": data,
                "model": state.embed_name,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    @router.get("/v1/models", tags=["openai"], summary="The served models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [_model_card(state, name) for name in state.model_names()]}

    @router.get("/v1/models/{model:path}", tags=["openai"], summary="One served model")
    async def model(model: str) -> dict[str, Any]:
        if model not in state.model_names():
            raise APIError(
                404, f"the model {model!r} does not exist on this server", param="model", code="model_not_found"
            )
        return _model_card(state, model)

    @router.post("/tokenize", tags=["tokenizer"], summary="Text or chat messages to token ids")
    async def tokenize(body: TokenizeRequest) -> dict[str, Any]:
        llm, _ = state.chat(body.model)
        if (body.prompt is None) == (body.messages is None):
            raise bad_request("give exactly one of prompt and messages", "prompt")
        if body.prompt is not None:
            ids = llm.tokenizer.encode(body.prompt, add_special_tokens=body.add_special_tokens)
        else:
            try:
                ids = llm.encode_chat(
                    chat_messages(body.messages or []), body.add_generation_prompt, body.chat_template_kwargs
                )
            except APIError:
                raise
            except Exception as e:
                raise bad_request(f"messages: the chat template could not render them: {e}", "messages") from None
        out: dict[str, Any] = {"count": len(ids), "max_model_len": llm.max_model_len, "tokens": ids}
        if body.return_token_strs:
            out["token_strs"] = [llm.tokenizer.token_text(t) for t in ids]
        return out

    @router.post("/detokenize", tags=["tokenizer"], summary="Token ids to text")
    async def detokenize(body: DetokenizeRequest) -> dict[str, Any]:
        llm, _ = state.chat(body.model)
        vocab = llm.config.vocab_size
        bad = [t for t in body.tokens if t >= vocab]
        if bad:
            raise bad_request(f"tokens: ids {bad[:5]} are outside the vocabulary of {vocab}", "tokens")
        return {"prompt": llm.tokenizer.decode(body.tokens, skip_special_tokens=False)}

    return router


def build_open_router(state: ServerState, metrics: Metrics) -> APIRouter:
    """Routes that need no key: probes and scrapes."""
    router = APIRouter()

    @router.get("/health", tags=["server"], summary="200 once the models are loaded, 503 before")
    async def health() -> Response:
        if state.ready:
            return JSONResponse({"status": "ok"})
        message = f"model failed to load: {state.load_error}" if state.load_error else "the model is still loading"
        return JSONResponse(
            error_body(message, "server_error", None, "model_loading"), status_code=503, headers={"Retry-After": "5"}
        )

    @router.get("/version", tags=["server"], summary="The brainwork version")
    async def version() -> dict[str, str]:
        return {"version": brainwork.__version__}

    @router.get("/metrics", tags=["server"], summary="Prometheus metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    return router


def _model_card(state: ServerState, name: str) -> dict[str, Any]:
    card: dict[str, Any] = {
        "id": name,
        "object": "model",
        "created": state.created,
        "owned_by": "brainwork",
        "root": name,
        "parent": None,
    }
    if name == state.chat_name and state.llm is not None:
        card["max_model_len"] = state.llm.max_model_len
    return card


def _texts(value: Any) -> list[str]:
    items = [value] if isinstance(value, str) else list(value)
    if not items:
        raise bad_request("input: empty list", "input")
    if not all(isinstance(x, str) for x in items):
        raise bad_request("input: token-id input is not supported for embeddings; send text", "input")
    if len(items) > MAX_EMBEDDING_INPUTS:
        raise bad_request(f"input: at most {MAX_EMBEDDING_INPUTS} inputs per request, got {len(items)}", "input")
    for i, text in enumerate(items):
        if not text.strip():
            raise bad_request(f"input[{i}]: empty string", "input")
    return items


def _encode(vector: np.ndarray, fmt: str) -> list[float] | str:
    if fmt == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return vector.tolist()
