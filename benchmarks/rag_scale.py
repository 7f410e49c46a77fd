"""How the SQLite store scales: ingest rate, size on disk, and query latency at 10k and 100k chunks.

Chunks are synthetic (the point is the store, not the model): 60-word texts drawn from a
Zipf-distributed 20,000-word vocabulary, and random unit 384-dimensional vectors, written ten
chunks to a document (one transaction each) with a lead and 15 paragraph vectors (BBC articles
have about 1.5 paragraphs per chunk). Queries are 5 words from the same vocabulary past
its 100 commonest (a real query's stopwords are dropped) with random vectors. Reported per size:
chunks/s written, bytes on disk per chunk, and p50/p99 latency of dense (exact cosine over the
in-memory matrix), lexical (FTS5 BM25 over chunks) and hybrid search (chunk and document rankers
fused, chunk texts fetched), plus the first query's cost of loading the matrix.
The model's own cost is measured beside it for scale: MiniLM embedding of 200 real chunks.

    .venv/bin/python benchmarks/rag_scale.py [--sizes 10000 100000] [--queries 200]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from brainwork.rag.store import Passages, SQLiteStore

DIM = 384
PER_DOC = 10
PARAGRAPHS = 15  # per document


class _RandomEmbedder:
    """Stands in for the model in the store benchmark: random unit vectors, the same width."""

    name, dim = "random", DIM

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def embed(self, texts: list[str]) -> np.ndarray:
        v = self.rng.standard_normal((len(texts), DIM)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def vocabulary(n: int = 20_000) -> list[str]:
    rng = np.random.default_rng(1)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    return ["".join(rng.choice(letters, size=rng.integers(3, 10))) for _ in range(n)]


def texts(rng: np.random.Generator, words: list[str], count: int, length: int, skip: int = 0) -> list[str]:
    """Zipf-distributed words; `skip` leaves out the commonest (a query's stopwords are dropped)."""
    ranks = np.minimum(rng.zipf(1.2, size=(count, length)) + skip, len(words)) - 1
    return [" ".join(words[i] for i in row) for row in ranks]


def percentiles(samples: list[float]) -> str:
    ms = np.array(samples) * 1000
    return f"p50 {np.percentile(ms, 50):7.2f} ms  p99 {np.percentile(ms, 99):7.2f} ms"


def run(size: int, queries: int, words: list[str]) -> dict[str, float]:
    from brainwork.rag.search import Searcher

    folder = Path(tempfile.mkdtemp(prefix="brainwork-rag-scale-"))
    store = SQLiteStore(folder / "scale.sqlite")
    store.create_collection("c", "random", DIM)
    rng = np.random.default_rng(size)
    fake = _RandomEmbedder(size)
    t0 = time.perf_counter()
    for d in range(size // PER_DOC):
        chunk_texts = texts(rng, words, PER_DOC, 60)
        passages = fake.embed(["p"] * (1 + PARAGRAPHS))  # (1 + P, D): the lead, then the paragraphs
        store.put_document(
            "c", f"doc{d}", f"h{d}", chunk_texts, fake.embed(chunk_texts), passages=Passages(passages[0], passages[1:])
        )
    write_s = time.perf_counter() - t0
    store._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size_bytes = sum(f.stat().st_size for f in folder.iterdir())

    query_texts = texts(rng, words, queries, 5, skip=100)
    query_vecs = fake.embed(query_texts)
    t0 = time.perf_counter()
    store.dense("c", query_vecs[0], 10)  # loads the matrix
    load_s = time.perf_counter() - t0
    dense, lexical, hybrid = [], [], []
    searcher = Searcher(store, fake, "c")  # type: ignore[arg-type]
    for text, vec in zip(query_texts, query_vecs, strict=True):
        t = time.perf_counter()
        store.dense("c", vec, 10)
        dense.append(time.perf_counter() - t)
        t = time.perf_counter()
        store.lexical("c", text, 10)
        lexical.append(time.perf_counter() - t)
        t = time.perf_counter()
        searcher.search(text, 10)
        hybrid.append(time.perf_counter() - t)
    print(
        f"{size:>7d} chunks: write {size / write_s:8.0f} chunks/s, {size_bytes / size:6.0f} bytes/chunk "
        f"({size_bytes / 2**20:.1f} MiB), matrix load {load_s * 1000:.0f} ms"
    )
    for name, samples in (("dense", dense), ("lexical", lexical), ("hybrid", hybrid)):
        print(f"{'':>16s}{name:8s} {percentiles(samples)}")
    store.close()
    for f in folder.iterdir():
        f.unlink()
    folder.rmdir()
    return {"dense": float(np.median(dense)), "lexical": float(np.median(lexical)), "hybrid": float(np.median(hybrid))}


def model_rate() -> None:
    from brainwork.rag.ingest import Embedder
    from tests.rag_helpers import bbc_articles

    embedder = Embedder()
    chunker = embedder.chunker()
    chunks = [c for _, _, _, body in bbc_articles(8) for c in chunker.split(body)][:200]
    embedder.embed(chunks[:8])
    t0 = time.perf_counter()
    embedder.embed(chunks)
    took = time.perf_counter() - t0
    t0 = time.perf_counter()
    for q in chunks[:50]:
        embedder.embed([q[:60]])
    print(
        f"model (MiniLM): {len(chunks) / took:.1f} real chunks/s embedded; "
        f"one short query embedded in {(time.perf_counter() - t0) / 50 * 1000:.1f} ms"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--no-model", action="store_true", help="skip the MiniLM reference")
    args = ap.parse_args()
    words = vocabulary()
    medians = {size: run(size, args.queries, words) for size in args.sizes}
    if len(args.sizes) > 1:
        small, large = args.sizes[0], args.sizes[-1]
        growth = ", ".join(f"{k} x{medians[large][k] / medians[small][k]:.1f}" for k in medians[small])
        print(f"median query time from {small} to {large} chunks (x{large / small:.0f} data): {growth}")
    if not args.no_model:
        model_rate()


if __name__ == "__main__":
    main()
