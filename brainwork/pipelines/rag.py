"""`rag`: ingest files into a collection, search it, and answer questions with cited sources."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from brainwork.catalog import DEFAULT_CHAT_MODEL
from brainwork.rag.answer import DEFAULT_MIN_COSINE, Answer, Answerer, AnswerStream
from brainwork.rag.ingest import Embedder, Ingestor, IngestReport, Item
from brainwork.rag.rerank import QueryLikelihoodReranker
from brainwork.rag.search import Hit, Searcher
from brainwork.rag.store import CollectionInfo, VectorStore, Where
from brainwork.rag.stores import open_store

DEFAULT_COLLECTION = "default"


class RagPipeline:
    """`pipeline("rag", model=CHAT_MODEL, store=PATH, collection=NAME, rerank=False)`.

    The chat model loads on the first question; adding and searching need only the embedding
    model. `store` is a path (default: the user's data directory) or a `VectorStore`. `rerank=True`
    lets the chat model reorder the top `rerank_depth` hits; `rerank="smollm2-135m-instruct"` (a
    model name) lets that model do it, so a large answering model need not score ten passages per
    question (Qwen2.5-Coder-1.5B would be ~10x slower at it than SmolLM2-135M).
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        store: str | Path | VectorStore | None = None,
        collection: str = DEFAULT_COLLECTION,
        embedding_model: str | None = None,
        embedder: Embedder | None = None,
        llm: Any = None,
        k: int = 4,
        mode: str = "hybrid",
        min_cosine: float = DEFAULT_MIN_COSINE,
        max_model_len: int | None = 4096,
        chunk_tokens: int = 200,
        chunk_overlap: int = 40,
        rerank: bool | str = False,
        rerank_depth: int = 10,
    ) -> None:
        self.store: VectorStore = store if _is_store(store) else open_store(store)
        self.collection = collection
        self.embedder = embedder or Embedder(embedding_model)
        self.model = model or DEFAULT_CHAT_MODEL
        self._llm, self.max_model_len = llm, max_model_len
        self.k, self.mode, self.min_cosine = k, mode, min_cosine
        self.chunker = self.embedder.chunker(chunk_tokens, chunk_overlap)
        # log P(query | chunk) over the top `rerank_depth` hits, by the chat model or by its own one
        if not isinstance(rerank, (bool, str)):
            raise ValueError(f"rerank: expected True, False or a model name, got {rerank!r}")
        judge = (lambda: self.llm) if rerank is True else (lambda: _load_llm(str(rerank), _RERANK_MODEL_LEN))
        self.reranker = QueryLikelihoodReranker(judge, rerank_depth) if rerank else None

    @property
    def llm(self) -> Any:
        if self._llm is None:
            self._llm = _load_llm(self.model, self.max_model_len)
        return self._llm

    def add(
        self, paths: Sequence[str | Path], metadata: dict[str, Any] | None = None, progress: bool = True
    ) -> IngestReport:
        return self._ingestor().add_files(paths, metadata, progress)

    def add_texts(self, items: Sequence[Item], progress: bool = False) -> IngestReport:
        return self._ingestor().add_texts(items, progress)

    def search(self, query: str, k: int = 5, where: Where | None = None) -> list[Hit]:
        return self.searcher().search(query, k, where)

    def ask(self, question: str, where: Where | None = None, **sampling: Any) -> Answer:
        return self.answerer().ask(question, where, **sampling)

    def stream(self, question: str, where: Where | None = None, **sampling: Any) -> AnswerStream:
        return self.answerer().stream(question, where, **sampling)

    def __call__(self, question: str, where: Where | None = None, **sampling: Any) -> dict[str, Any]:
        return self.ask(question, where, **sampling).as_dict()

    def collections(self) -> list[CollectionInfo]:
        return self.store.collections()

    def searcher(self) -> Searcher:
        return Searcher(self.store, self.embedder, self.collection, self.mode, reranker=self.reranker)

    def answerer(self) -> Answerer:
        return Answerer(self.searcher(), lambda: self.llm, self.k, self.min_cosine)

    def _ingestor(self) -> Ingestor:
        return Ingestor(self.store, self.embedder, self.collection, self.chunker)


# a reranking prompt is at most 160 passage tokens, the template and the query
_RERANK_MODEL_LEN = 1024


def _load_llm(model: str, max_model_len: int | None) -> Any:
    from brainwork.llm import LLM

    return LLM(model, max_model_len=max_model_len, progress=False)


def _is_store(obj: Any) -> bool:
    return obj is not None and not isinstance(obj, (str, Path)) and hasattr(obj, "put_document")
