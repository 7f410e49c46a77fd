"""Ranking chunks for a query: dense (MiniLM cosine), lexical (FTS5 BM25), or hybrid.

Hybrid search ranks documents with seven rankers and fuses their ranks (weighted reciprocal
rank fusion, score = sum over rankers of weight / (rrf_k + rank), so no ranker's score scale
matters):
- chunk cosine and chunk BM25 (each document placed by its best chunk);
- document cosine (mean chunk vector) and document BM25 (over the whole text);
- BM25 over only the candidate chunks that open their document (its lead, which in news,
  papers and most reports sums it up);
- paragraph cosine (each document placed by its best paragraph) and lead-sentence cosine, both
  weighted 2: a short query is closer to one paragraph or the opening sentence than to a
  200-token chunk that dilutes it.
It returns each top document's best chunk, so k results are k different documents; in every
mode, a hit whose text equals a higher hit's (an article stored under two names) is folded into
that one, which names it in `also`, so k results are also k different texts. Short
queries (headlines, names) are where BM25 wins and dense loses, paraphrases the reverse;
whole-document scores catch a headline whose words are spread over an article. On the BBC
corpus, headlines as queries, top 5 (benchmarks/rag_bbc.py): dense chunks 0.886, BM25 chunks
0.877, chunk fusion 0.921, the four document rankers 0.948, with the two lead-chunk rankers
0.957; with paragraph and lead-sentence vectors instead of the lead chunk's cosine, 0.966; with
copies folded 0.968 (dense 0.893, BM25 0.887: 133 articles of the corpus have an exact twin).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Protocol

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
    likelihood: float | None = None  # log P(query | chunk), when a reranker scored it
    also: tuple[str, ...] = ()  # other documents holding this same text (folded into this hit)

    @property
    def sources(self) -> tuple[str, ...]:
        """Every document this hit's text comes from: its own, then `also`."""
        return (self.source, *self.also)

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "chunk": self.chunk,
            "score": self.score,
            "dense": self.dense,
            "lexical": self.lexical,
            "likelihood": self.likelihood,
            "text": self.text,
            "metadata": self.metadata,
            "also": list(self.also),
        }


class Reranker(Protocol):
    depth: int  # how many of the retriever's hits it reorders

    def rerank(self, query: str, hits: list[Hit]) -> list[Hit]: ...


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
        rrf_k: int = 5,  # small: the fused order should follow the rankers' top few closely
        reranker: Reranker | None = None,  # reorders the top `reranker.depth` hits (rag/rerank.py)
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode: expected one of {', '.join(MODES)}, got {mode!r}")
        store.collection(collection)  # raises UnknownCollectionError now, not at the first query
        self.store, self.embedder, self.collection = store, embedder, collection
        self.mode, self.candidates, self.rrf_k, self.reranker = mode, candidates, rrf_k, reranker

    def search(self, query: str, k: int = 5, where: Where | None = None) -> list[Hit]:
        return self.run(query, k, where).hits

    def run(self, query: str, k: int = 5, where: Where | None = None) -> Results:
        if not isinstance(query, str) or not query.strip():
            raise EmptyQueryError("query: empty; give some words to search for")
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be an integer >= 1, got {k!r}")
        fetch = k if self.reranker is None else max(k, self.reranker.depth)  # hits before any reranking
        pool = max(self.candidates, fetch)
        wanted = 2 * fetch  # room for the duplicates that fold away
        vector = self.embedder.embed([query])[0]  # (D,)
        dense = self.store.dense(self.collection, vector, pool, where)
        lexical = self.store.lexical(self.collection, query, pool, where) if self.mode != "dense" else []
        best = dense[0][1] if dense else 0.0
        cosine = dict(dense)
        bm25 = dict(lexical)
        if self.mode == "dense":
            ranked = dense[:wanted]
        elif self.mode == "lexical":
            ranked = lexical[:wanted]
        else:
            ranked = self._hybrid(query, vector, dense, lexical, wanted, pool, where, cosine)
        records = {r.id: r for r in self.store.chunks([cid for cid, _ in ranked])}
        hits = [
            Hit(r.source, r.index, r.text, score, cosine.get(cid), bm25.get(cid), cid, r.metadata)
            for cid, score in ranked
            if (r := records.get(cid)) is not None
        ]
        hits = fold_duplicates(hits)[:fetch]
        if self.reranker is not None:
            hits = self.reranker.rerank(query, hits)
        return Results(hits[:k], best)

    def _hybrid(
        self,
        query: str,
        vector: Any,
        dense: list[tuple[int, float]],
        lexical: list[tuple[int, float]],
        k: int,
        pool: int,
        where: Where | None,
        cosine: dict[int, float],
    ) -> list[tuple[int, float]]:
        """(chunk id, fused score) of the best chunk of each of the k best documents."""
        places = self.store.chunk_places(self.collection, [c for c, _ in dense + lexical])
        doc_of = {c: d for c, (d, _) in places.items()}
        opening = {c for c, (_, n) in places.items() if n == 0}
        rankings = [
            (1.0, _first_per_document(dense, doc_of)),
            (1.0, _first_per_document(lexical, doc_of)),
            (1.0, [d for d, _ in self.store.document_dense(self.collection, vector, pool, where)]),
            (1.0, [d for d, _ in self.store.document_lexical(self.collection, query, pool, where)]),
            # the candidates that open their document: a lead paragraph sums up what follows
            (1.0, _first_per_document([h for h in lexical if h[0] in opening], doc_of)),
            # weights 2, 2: measured on BBC headlines (0.966 of articles in the top 5, against 0.963
            # at 1, 1); documents stored without passages are simply absent from these two
            (2.0, [d for d, _ in self.store.paragraph_dense(self.collection, vector, pool, where)]),
            (2.0, [d for d, _ in self.store.lead_dense(self.collection, vector, pool, where)]),
        ]
        fused: dict[int, float] = {}
        for weight, ranking in rankings:
            for rank, did in enumerate(ranking):
                fused[did] = fused.get(did, 0.0) + weight / (self.rrf_k + rank + 1)
        top = sorted(fused.items(), key=lambda kv: -kv[1])[:k]
        # each document's chunk: its best in the chunk rankings, else its closest by cosine
        chunk_fused: dict[int, float] = {}
        for ranking in (dense, lexical):
            for rank, (cid, _) in enumerate(ranking):
                chunk_fused[cid] = chunk_fused.get(cid, 0.0) + 1.0 / (self.rrf_k + rank + 1)
        chosen: dict[int, int] = {}
        for cid, _ in sorted(chunk_fused.items(), key=lambda kv: -kv[1]):
            chosen.setdefault(doc_of[cid], cid)
        missing = [d for d, _ in top if d not in chosen]
        for did, (cid, cos) in self.store.best_chunks(self.collection, missing, vector).items():
            chosen[did] = cid
            cosine.setdefault(cid, cos)
        return [(chosen[d], score) for d, score in top if d in chosen]


def fold_duplicates(hits: list[Hit]) -> list[Hit]:
    """One hit per text: a hit whose text (up to whitespace) equals a higher one's is folded into
    it, its source listed in `also`. The same article stored under two names, or a boilerplate
    paragraph, would otherwise fill two of the k places (and two slots of an answer's prompt) with
    one passage; the BBC corpus holds 133 such pairs of articles."""
    kept: list[Hit] = []
    at: dict[str, int] = {}
    for h in hits:
        key = " ".join(h.text.split())
        i = at.get(key)
        if i is None:
            at[key] = len(kept)
            kept.append(h)
        elif h.source != kept[i].source and h.source not in kept[i].also:
            kept[i] = replace(kept[i], also=(*kept[i].also, h.source))
    return kept


def _first_per_document(ranking: list[tuple[int, float]], doc_of: dict[int, int]) -> list[int]:
    """Document ids in the order their first chunk appears in a chunk ranking."""
    seen: dict[int, None] = {}
    for cid, _ in ranking:
        seen.setdefault(doc_of[cid], None)
    return list(seen)
