"""RAG and recommendation routes: `POST /v1/rag/query` (whole or streamed like chat),
`POST /v1/collections/{name}/documents`, `GET /v1/collections`, `POST /v1/recommendations`.

They use the server's own models (the chat engine and the embedding encoder) and a store file:
`$BRAINWORK_STORE`, else the user's data directory. Store work and embedding run on the encoder
thread, one at a time, so the event loop never blocks on SQLite or a forward pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from brainwork.rag.answer import DEFAULT_MIN_COSINE, I_DONT_KNOW, Source, citation_numbers, fit_prompt
from brainwork.rag.errors import RagError, UnknownCollectionError, UnknownItemError
from brainwork.rag.ingest import Embedder, Ingestor, Item
from brainwork.rag.pg_store import is_postgres
from brainwork.rag.readers import DEFAULT_MAX_BYTES, check_size
from brainwork.rag.recommend import Recommender
from brainwork.rag.rerank import QueryLikelihoodReranker, query_likelihood
from brainwork.rag.search import MODES, Results, Searcher
from brainwork.rag.store import VectorStore, default_store_path
from brainwork.rag.stores import open_store
from brainwork.sampling_params import SamplingParams
from brainwork.server import routes_generate as gen
from brainwork.server.errors import APIError, bad_request, from_value_error
from brainwork.server.generation import Prompt
from brainwork.server.protocol import ERROR_RESPONSES
from brainwork.server.state import ServerState

T = TypeVar("T")
MAX_DOCUMENTS = 1024  # per request


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow")


class DocumentIn(_Body):
    id: str = Field(min_length=1, description="the document's id (its source); re-sending the same text is a no-op")
    text: str
    metadata: dict[str, Any] = Field(default_factory=dict)


class DocumentsRequest(_Body):
    documents: list[DocumentIn] = Field(min_length=1, max_length=MAX_DOCUMENTS)


class RagQueryRequest(_Body):
    query: str = Field(description="the question")
    collection: str = "default"
    model: str | None = Field(None, description="served chat model; omitted means the server's")
    k: int = Field(4, ge=1, le=32, description="chunks retrieved and given to the model")
    mode: str = Field("hybrid", description="hybrid, dense or lexical")
    where: dict[str, Any] | None = Field(None, description="metadata filter: key -> value or list of values")
    min_score: float = Field(DEFAULT_MIN_COSINE, ge=-1, le=1, description="below this best cosine: I don't know")
    max_tokens: int = Field(160, ge=1, le=4096)
    temperature: float = Field(0.0, ge=0, le=2)
    seed: int | None = None
    stream: bool = False
    rerank: bool = Field(
        False, description="reorder the top rerank_depth hits by the chat model's log P(query | chunk)"
    )
    rerank_depth: int = Field(10, ge=2, le=50, description="hits the chat model reorders when rerank is on")


class RecommendationRequest(_Body):
    collection: str = "items"
    item: str | None = Field(None, description="recommend items similar to this one")
    liked: list[str] = Field(default_factory=list)
    disliked: list[str] = Field(default_factory=list)
    seen: list[str] = Field(default_factory=list, description="left out of the results")
    k: int = Field(10, ge=1, le=1000)
    diversity: float = Field(0.0, ge=0, le=1, description="MMR: 0 pure relevance, 1 pure variety")
    where: dict[str, Any] | None = None


class RagState:
    """The store and the embedder the routes share, opened on first use."""

    def __init__(self, state: ServerState, store_path: str | Path | None = None) -> None:
        self.state = state
        self.store_path = store_path if is_postgres(store_path) else Path(store_path or default_store_path())
        self._store: VectorStore | None = None
        self._embedder: Embedder | None = None

    def store(self) -> VectorStore:
        if self._store is None:
            self._store = open_store(self.store_path)
        return self._store

    def embedder(self) -> Embedder:
        runner = self.state.embedder(None)
        if self._embedder is None or self._embedder.runner is not runner:
            self._embedder = Embedder(self.state.embed_name, runner=runner)
        return self._embedder

    async def run(self, fn: Callable[[], T]) -> T:
        """Run store or encoder work on the encoder thread; library errors become 4xx."""

        def guarded() -> T:
            try:
                return fn()
            except (UnknownCollectionError, UnknownItemError) as e:
                raise _not_found(e) from None
            except (RagError, ValueError) as e:
                raise from_value_error(e) from None

        return await self.state.run_encoder(guarded)


def _not_found(e: Exception) -> APIError:
    code = "collection_not_found" if isinstance(e, UnknownCollectionError) else "item_not_found"
    return APIError(404, str(e), "not_found_error", param="collection" if "collection" in code else "liked", code=code)


def build_router(state: ServerState, dependencies: list[Any], store_path: str | Path | None = None) -> APIRouter:
    rag = RagState(state, store_path)
    router = APIRouter(dependencies=dependencies, responses=ERROR_RESPONSES)

    @router.get("/v1/collections", tags=["rag"], summary="The store's collections")
    async def collections() -> dict[str, Any]:
        infos = await rag.run(lambda: rag.store().collections())
        return {"object": "list", "data": [{"object": "collection", **vars(c)} for c in infos]}

    @router.post("/v1/collections/{name}/documents", tags=["rag"], summary="Add or replace documents")
    async def add_documents(name: str, body: DocumentsRequest) -> dict[str, Any]:
        state.require_ready()
        items = []
        for i, doc in enumerate(body.documents):  # refuse the request before writing any of it
            check = f"documents[{i}] ({doc.id!r})"
            if not doc.text.strip():
                raise bad_request(f"documents.{i}: {check} has no text", f"documents.{i}.text")
            try:
                check_size(check, len(doc.text.encode("utf-8")), DEFAULT_MAX_BYTES)
            except RagError as e:
                raise APIError(413, str(e), param=f"documents.{i}.text", code="document_too_large") from None
            items.append(Item(doc.id, doc.text, doc.metadata))

        def work() -> dict[str, Any]:
            report = Ingestor(rag.store(), rag.embedder(), name).add_texts(items)
            return report.as_dict()

        return {"object": "ingest.report", "collection": name, **(await rag.run(work))}

    @router.post("/v1/rag/query", tags=["rag"], summary="Answer from a collection with numbered citations")
    async def rag_query(body: RagQueryRequest, request: Request) -> Response:
        llm, engine = state.chat(body.model)
        if not body.query.strip():
            raise bad_request("query: empty; give a question", "query")
        if body.mode not in MODES:
            raise bad_request(f"mode: expected one of {', '.join(MODES)}, got {body.mode!r}", "mode")
        window = engine.engine.config.max_model_len

        reranker = QueryLikelihoodReranker(llm, body.rerank_depth) if body.rerank else None
        fetch = max(body.k, body.rerank_depth) if reranker else body.k

        def prompt(results: Results) -> tuple[list[int], list[Source]]:
            if not results.hits or results.best_cosine < body.min_score:
                return [], []
            ids, kept = fit_prompt(llm.encode_chat, body.query, results.hits, window, body.max_tokens)
            return ids, [Source(i, h.source, h.chunk, h.score, h.text, h.also) for i, h in enumerate(kept, 1)]

        def search() -> Results:  # on the encoder thread, as every store and embedder call
            return Searcher(rag.store(), rag.embedder(), body.collection, body.mode).run(body.query, fetch, body.where)

        results = await rag.run(search)
        if reranker is not None and len(results.hits) > 1 and results.best_cosine >= body.min_score:
            likelihood = await _query_likelihoods(engine, reranker, llm.tokenizer, body.query, results.hits)
            results.hits = reranker.fuse(results.hits, likelihood)
        results.hits = results.hits[: body.k]
        ids, sources = await rag.run(lambda: prompt(results))
        rid = f"rag-{uuid.uuid4().hex}"
        head = {"id": rid, "created": int(time.time()), "model": state.chat_name}
        params = SamplingParams(max_tokens=body.max_tokens, temperature=body.temperature, seed=body.seed)
        job = gen._Job(state, engine, [Prompt(None, ids)], params, rid, state.chat_name, None) if ids else None
        if body.stream:
            return await gen._stream(request, state.generation, lambda: _rag_chunks(job, head, sources, results))
        if job is None:
            text, usage = I_DONT_KNOW, {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
        else:
            choices, usage = await gen._whole(request, state.generation, job.collect)
            text = choices[0].text.strip()
        return JSONResponse({**head, "object": "rag.answer", **_answer_fields(text, sources, results), "usage": usage})

    @router.post("/v1/recommendations", tags=["rag"], summary="Items for a user, or items like one item")
    async def recommendations(body: RecommendationRequest) -> dict[str, Any]:
        state.require_ready()
        liked = [body.item, *body.liked] if body.item else body.liked
        if not liked and not body.disliked:
            raise bad_request("liked: give an item, or liked or disliked item ids", "liked")

        def work() -> list[dict[str, Any]]:
            recommender = Recommender(rag.store(), rag.embedder(), body.collection)
            rag.store().collection(body.collection)
            picks = recommender.recommend(liked, body.disliked, body.k, body.diversity, body.seen, body.where)
            return [r.as_dict() for r in picks]

        return {"object": "list", "collection": body.collection, "data": await rag.run(work)}

    return router


async def _query_likelihoods(
    engine: Any, reranker: QueryLikelihoodReranker, tokenizer: Any, query: str, hits: list[Any]
) -> list[float]:
    """The reranker's scoring requests on the server's engine (its loop runs them with everything
    else in flight), all at once."""

    async def one(ids: list[int], params: SamplingParams) -> float:
        scored = None
        async for out in engine.generate(ids, params):
            if out.error:
                raise APIError(500, f"reranking failed: {out.error}", "server_error", code="engine_error")
            if out.prompt_logprobs is not None:
                scored = out
        assert scored is not None  # sent with the first token, and the request asks for one
        return query_likelihood(scored)

    requests = reranker.requests(tokenizer, [(query, h.text) for h in hits])
    return list(await asyncio.gather(*(one(ids, params) for ids, params in requests)))


def _answer_fields(text: str, sources: list[Source], results: Results) -> dict[str, Any]:
    numbers = citation_numbers(text, sources)
    return {
        "answer": text,
        "refused": not sources,
        "best_score": results.best_cosine,
        "sources": [s.as_dict() for s in sources],
        "citations": [{"number": n, "source": sources[n - 1].source, "chunk": sources[n - 1].chunk} for n in numbers],
    }


async def _rag_chunks(job: Any, head: dict[str, Any], sources: list[Source], results: Results) -> AsyncIterator[str]:
    """A chat-shaped SSE stream: a `rag.sources` event first, `chat.completion.chunk` deltas, then a
    `rag.citations` event with what the answer cited, and `[DONE]`."""
    yield gen._sse({**head, "object": "rag.sources", "sources": [s.as_dict() for s in sources]})
    chunk = {**head, "object": "chat.completion.chunk"}
    if job is None:
        text = I_DONT_KNOW
        yield gen._sse({**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": text}}]})
        yield gen._sse({**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    else:
        text = ""
        # aclosing: a client that hangs up closes this stream, which must abort the engine request
        async with contextlib.aclosing(gen._chat_chunks(job, include_usage=True)) as events:
            async for event in events:
                if event == gen._DONE:
                    break
                payload = json.loads(event[len("data: ") :])
                for choice in payload.get("choices", []):
                    text += choice.get("delta", {}).get("content") or ""
                yield gen._sse({**payload, "id": head["id"]})
    fields = _answer_fields(text.strip(), sources, results)
    yield gen._sse({**head, "object": "rag.citations", "answer": fields["answer"], "citations": fields["citations"]})
    yield gen._DONE
