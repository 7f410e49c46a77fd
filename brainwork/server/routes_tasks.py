"""Task routes beside the OpenAI ones, in the shapes vLLM, TEI, Jina and Cohere use:
`POST /classify` (also `/v1/classify`; with `labels` it is zero-shot), `POST /v1/rerank`,
`POST /v1/score`.

A request carries many items; one bad item (not a string, empty, too long without
`truncation`) is answered with its own error entry and the others are still scored.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from brainwork.errors import ModelNotFoundError
from brainwork.server.errors import APIError, bad_request, error_body
from brainwork.server.generation import ClientGone, until_disconnect
from brainwork.server.protocol import (
    ERROR_RESPONSES,
    MAX_TASK_ITEMS,
    ClassifyRequest,
    RerankRequest,
    ScoreRequest,
)
from brainwork.server.state import ServerState

T = TypeVar("T")
R = TypeVar("R")


class ItemError(Exception):
    """One item's failure, reported in its place in the response."""


ImageItem = str | bytes | ItemError  # base64 text or file bytes, or why the item is not an image


def build_router(state: ServerState, dependencies: list[Any]) -> APIRouter:
    router = APIRouter(dependencies=dependencies, responses=ERROR_RESPONSES, tags=["tasks"])

    async def run(request: Request, work: Callable[[], T]) -> T:
        """`work` on the encoder thread, under the embedding admission limits."""

        async def admitted() -> T:
            await state.embedding.acquire()
            try:
                return await state.run_encoder(work)
            finally:
                state.embedding.release()

        return await until_disconnect(request, admitted())

    async def classify(body: ClassifyRequest, request: Request) -> Response:
        raw = [body.input] if isinstance(body.input, str) else body.input
        if any(isinstance(item, dict) for item in raw):
            return await classify_images(body, [_image(item, i) for i, item in enumerate(raw)], request)
        tasks = state.task_model(body.model, "classify")
        items = _items(body.input, "input")
        zero_shot = body.labels is not None
        if zero_shot:
            from brainwork.pipelines.zero_shot import check_labels

            try:
                labels = check_labels(body.labels)
            except ValueError as e:
                raise bad_request(str(e), "labels") from None
            if tasks.zero_shot_error:
                raise bad_request(tasks.zero_shot_error, "labels")
            if body.hypothesis_template.count("{}") != 1:
                raise bad_request("hypothesis_template: needs exactly one '{}' for the label", "hypothesis_template")
        else:
            assert tasks.classifier is not None
            labels = list(tasks.classifier.labels)

        def scores(texts: list[str]) -> list[list[float]]:
            if zero_shot:
                assert tasks.zero_shot is not None
                out = tasks.zero_shot.scores(texts, labels, body.hypothesis_template, body.multi_label, body.truncation)
            else:
                assert tasks.classifier is not None
                out = tasks.classifier._scores(texts, None, body.truncation)
            return out.tolist()

        try:
            results = await run(request, lambda: _per_item(items, scores, "input"))
        except ClientGone:
            return Response(status_code=499)
        data = []
        for i, r in enumerate(results):
            if isinstance(r, ItemError):
                data.append({"index": i, "error": _item_error(r, "input")})
                continue
            best = max(range(len(labels)), key=lambda j: r[j])
            data.append({"index": i, "label": labels[best], "probs": r, "num_classes": len(labels)})
        return _reply("classify", tasks.classifier_name, {"labels": labels, "data": data})

    async def classify_images(body: ClassifyRequest, images: list[ImageItem], request: Request) -> Response:
        from brainwork.pipelines.image_classification import classify_images as run_images

        state.require_ready()
        if body.model is not None and body.model in state.model_names():
            raise bad_request(f"model {body.model!r} classifies text; leave 'model' out for images", "model")
        if not images:
            raise bad_request("input: empty list", "input")
        if len(images) > MAX_TASK_ITEMS:
            raise bad_request(f"input: {len(images)} items, over the limit of {MAX_TASK_ITEMS}", "input")
        top_k = body.top_k or 5

        def work() -> list[list[dict[str, Any]] | ItemError]:
            try:
                return _per_item(images, lambda batch: run_images(batch, body.model, top_k), "input")
            except ModelNotFoundError as e:
                raise APIError(404, str(e), param="model", code="model_not_found") from None

        try:
            results = await run(request, work)
        except ClientGone:
            return Response(status_code=499)
        data = [
            {"index": i, "error": _item_error(r, "input")}
            if isinstance(r, ItemError)
            else {"index": i, "label": r[0]["label"], "score": r[0]["score"], "top_k": r}
            for i, r in enumerate(results)
        ]
        from brainwork.vision.classifier import DEFAULT_IMAGE_MODEL

        return _reply("classify", body.model or DEFAULT_IMAGE_MODEL, {"data": data})

    router.post("/classify", summary="Classify texts or images; with 'labels', zero-shot (vLLM shape)")(classify)

    @router.post(
        "/v1/classify",
        summary="The same as /classify; images may also come as a multipart form (file, model, top_k)",
        openapi_extra={"requestBody": {"required": True, "content": _V1_CLASSIFY_CONTENT}},
    )
    async def classify_v1(request: Request) -> Response:
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            body, images = await _form_images(request)
            return await classify_images(body, images, request)
        try:
            body = ClassifyRequest.model_validate_json(await request.body())
        except ValidationError as e:
            raise RequestValidationError(e.errors()) from None
        return await classify(body, request)

    @router.post("/v1/rerank", summary="Order documents by relevance to a query (Jina/Cohere shape)")
    async def rerank(body: RerankRequest, request: Request) -> Response:
        tasks = state.task_model(body.model, "rerank")
        if not body.query.strip():
            raise bad_request("query: empty string", "query")
        docs = _items([d.get("text") if isinstance(d, dict) else d for d in body.documents], "documents")
        assert tasks.pair is not None
        pair = tasks.pair

        def work() -> list[float | ItemError]:
            def scores(ds: list[str]) -> list[float]:
                return pair.score([(body.query, d) for d in ds], body.truncation).tolist()

            return _per_item(docs, scores, "documents")

        try:
            results = await run(request, work)
        except ClientGone:
            return Response(status_code=499)
        ranked = sorted((i for i, r in enumerate(results) if not isinstance(r, ItemError)), key=lambda i: -results[i])
        out = []
        for i in ranked[: body.top_n or len(ranked)]:
            item: dict[str, Any] = {"index": i, "relevance_score": results[i]}
            if body.return_documents:
                item["document"] = {"text": docs[i]}
            out.append(item)
        errors = [{"index": i, "error": _item_error(r, "documents")} for i, r in enumerate(results) if _failed(r)]
        return _reply("rerank", tasks.pair_name, {"results": out, **({"errors": errors} if errors else {})})

    @router.post("/v1/score", summary="Relevance of text pairs: text_1 against each text_2, or pair by pair")
    async def score(body: ScoreRequest, request: Request) -> Response:
        tasks = state.task_model(body.model, "rerank")
        left = [body.text_1] if isinstance(body.text_1, str) else list(body.text_1)
        right = [body.text_2] if isinstance(body.text_2, str) else list(body.text_2)
        if not left or not right:
            raise bad_request("text_1 and text_2: need at least one text each", "text_1" if not left else "text_2")
        if len(left) == 1:
            left = left * len(right)
        if len(left) != len(right):
            raise bad_request(
                f"text_1 has {len(left)} texts and text_2 {len(right)}: give one text_1, or as many as text_2", "text_2"
            )
        pairs = _items([(a, b) for a, b in zip(left, right, strict=True)], "text_2")
        assert tasks.pair is not None
        pair = tasks.pair

        def work() -> list[float | ItemError]:
            return _per_item(pairs, lambda ps: pair.score(ps, body.truncation).tolist(), "text_2")

        try:
            results = await run(request, work)
        except ClientGone:
            return Response(status_code=499)
        data = [
            {"index": i, "error": _item_error(r, "text_2")}
            if isinstance(r, ItemError)
            else {"index": i, "object": "score", "score": r}
            for i, r in enumerate(results)
        ]
        return _reply("score", tasks.pair_name, {"data": data})

    return router


def _items(raw: Any, field: str) -> list[Any]:
    """The request's items; a malformed one stays in place as its ItemError."""
    items = [raw] if isinstance(raw, str) else list(raw)
    if not items:
        raise bad_request(f"{field}: empty list", field)
    if len(items) > MAX_TASK_ITEMS:
        raise bad_request(f"{field}: {len(items)} items, over the limit of {MAX_TASK_ITEMS}", field)
    out: list[Any] = []
    for i, item in enumerate(items):
        texts = item if isinstance(item, tuple) else (item,)
        if not all(isinstance(t, str) for t in texts):
            bad = next(t for t in texts if not isinstance(t, str))
            out.append(ItemError(f"{field}[{i}]: expected a string, got {type(bad).__name__}"))
        elif not all(t.strip() for t in texts):
            out.append(ItemError(f"{field}[{i}]: empty string"))
        else:
            out.append(item)
    return out


_V1_CLASSIFY_CONTENT = {
    "application/json": {"schema": {"$ref": "#/components/schemas/ClassifyRequest"}},
    "multipart/form-data": {
        "schema": {
            "type": "object",
            "required": ["file"],
            "properties": {
                "file": {"type": "array", "items": {"type": "string", "format": "binary"}},
                "model": {"type": "string"},
                "top_k": {"type": "integer", "minimum": 1, "maximum": 1000},
            },
        }
    },
}


async def _form_images(request: Request) -> tuple[ClassifyRequest, list[ImageItem]]:
    """The multipart form's image files (`file`, repeatable), `model` and `top_k`."""
    try:
        form = await request.form()
    except Exception as e:  # a malformed multipart body
        raise bad_request(f"the multipart body could not be read: {e}") from None
    fields = {k: v for k, v in form.multi_items() if isinstance(v, str)}
    try:
        body = ClassifyRequest(input=[], model=fields.get("model"), top_k=fields.get("top_k"))
    except ValidationError as e:
        raise RequestValidationError(e.errors()) from None
    images: list[ImageItem] = []
    for i, item in enumerate(form.getlist("file")):
        images.append(item if isinstance(item, str) else await item.read())
        if isinstance(item, str) and not item:
            images[-1] = ItemError(f"input[{i}]: an empty field where an image file was expected")
    if not images:
        raise bad_request("file: no image file in the form", "file")
    return body, images


def _image(item: Any, i: int) -> str | ItemError:
    """An image item: `{"image": base64 or data URL}` or OpenAI's `{"type": "image_url", "image_url": {"url"}}`."""
    if isinstance(item, dict):
        if isinstance(item.get("image"), str):
            return item["image"]
        url = item.get("image_url")
        url = url.get("url") if isinstance(url, dict) else url
        if isinstance(url, str):
            return url
    return ItemError(f"input[{i}]: expected {{'image': base64}} or {{'type': 'image_url', 'image_url': {{'url'}}}}")


def _per_item(items: Sequence[Any], fn: Callable[[list[Any]], list[R]], field: str) -> list[R | ItemError]:
    """`fn` over the good items in one call; when that call rejects an input, each item is run on
    its own so that only the bad ones fail."""
    good = [i for i, item in enumerate(items) if not isinstance(item, ItemError)]
    results: list[R | ItemError] = list(items)
    if not good:
        return results
    try:
        for i, r in zip(good, fn([items[i] for i in good]), strict=True):
            results[i] = r
    except ValueError:
        for i in good:
            try:
                results[i] = fn([items[i]])[0]
            except ValueError as e:
                # the library names the item by its place in the one-item call: "inputs[0]: ..."
                message = str(e)
                head, sep, rest = message.partition("[0]")
                results[i] = ItemError(f"{field}[{i}]{rest}" if sep and " " not in head else f"{field}[{i}]: {message}")
    return results


def _failed(result: object) -> bool:
    return isinstance(result, ItemError)


def _item_error(e: ItemError, field: str) -> dict[str, Any]:
    return error_body(str(e), "invalid_request_error", field)["error"]


def _reply(kind: str, model: str | None, body: dict[str, Any]) -> JSONResponse:
    head = {"id": f"{kind}-{uuid.uuid4().hex}", "object": "list", "created": int(time.time()), "model": model}
    return JSONResponse({**head, **body})
