"""Ranking chunks for a query: dense (MiniLM cosine), lexical (FTS5 BM25) or both fused.

Hybrid search takes each ranker's top `candidates` and fuses them by reciprocal rank
(score = sum over rankers of 1 / (rrf_k + rank)), so neither ranker's score scale matters.
Short queries (titles, names) are where BM25 wins and dense loses; paraphrases the reverse.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from brainwork.rag.errors import EmptyQueryError
from brainwork.rag.ingest import Embedder
from brainwork.rag.store import VectorStore, Where

MODES = ("hybrid", "dense", "lexical")


@dataclass(frozen=True)
class Hit:
    source: str
    chunk: int  # the chunk's number within its document
    text: str
    score: float  # the fused score in hybrid mode, else the ranker's own
    dense: float | None  # cosine with the query, when the dense ranker found it
    lexical: float | None  # -BM25, when the lexical ranker found it
    chunk_id: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "chunk": self.chunk,
            "score": self.score,
            "dense": self.dense,
            "lexical": self.lexical,
            "text": self.text,
            "metadata": self.metadata,
        }


@dataclass
class Results:
    hits: list[Hit]
    best_cosine: float  # the highest cosine of any chunk with the query: how relevant the store is


class Searcher:
    def __init__(
        self,
        store: VectorStore,
        embedder: Embedder,
        collection: str,
        mode: str = "hybrid",
        candidates: int = 50,
        rrf_k: int = 60,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode: expected one of {', '.join(MODES)}, got {mode!r}")
        store.collection(collection)  # raises UnknownCollectionError now, not at the first query
        self.store, self.embedder, self.collection = store, embedder, collection
        self.mode, self.candidates, self.rrf_k = mode, candidates, rrf_k

    def search(self, query: str, k: int = 5, where: Where | None = None) -> list[Hit]:
        return self.run(query, k, where).hits

    def run(self, query: str, k: int = 5, where: Where | None = None) -> Results:
        if not isinstance(query, str) or not query.strip():
            raise EmptyQueryError("query: empty; give some words to search for")
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be an integer >= 1, got {k!r}")
        pool = max(self.candidates, k)
        dense = self.store.dense(self.collection, self.embedder.embed([query])[0], pool, where)
        lexical = self.store.lexical(self.collection, query, pool, where) if self.mode != "dense" else []
        best = dense[0][1] if dense else 0.0
        cosine = dict(dense)
        bm25 = dict(lexical)
        if self.mode == "dense":
            ranked = dense[:k]
        elif self.mode == "lexical":
            ranked = lexical[:k]
        else:
            fused: dict[int, float] = {}
            for ranking in (dense, lexical):
                for rank, (cid, _) in enumerate(ranking):
                    fused[cid] = fused.get(cid, 0.0) + 1.0 / (self.rrf_k + rank + 1)
            ranked = sorted(fused.items(), key=lambda kv: -kv[1])[:k]
        records = {r.id: r for r in self.store.chunks([cid for cid, _ in ranked])}
        hits = [
            Hit(r.source, r.index, r.text, score, cosine.get(cid), bm25.get(cid), cid, r.metadata)
            for cid, score in ranked
            if (r := records.get(cid)) is not None
        ]
        return Results(hits, best)
