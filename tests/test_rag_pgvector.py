"""The PostgreSQL + pgvector store against a real PostgreSQL server started by the tests (the
`pgserver` wheel carries PostgreSQL and pgvector's binaries), checked against the SQLite store on
the same documents and real MiniLM vectors."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from brainwork.cli import main
from brainwork.pipelines import pipeline
from brainwork.rag.errors import EmbeddingMismatchError, UnknownCollectionError, UnknownItemError
from brainwork.rag.ingest import Embedder, Ingestor, Item
from brainwork.rag.pg_store import PgVectorStore
from brainwork.rag.search import Searcher
from brainwork.rag.store import SQLiteStore
from tests.rag_helpers import bbc_articles

TOL = 1e-5  # cosines: float32 vectors, summed in float64 by pgvector and float32 by numpy


@pytest.fixture(scope="module")
def pg_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import pgserver

    server = pgserver.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="stop")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


@pytest.fixture(scope="module")
def embedder(minilm_dir: Path) -> Embedder:
    return Embedder(str(minilm_dir))


@pytest.fixture(scope="module")
def both(
    pg_url: str, embedder: Embedder, tmp_path_factory: pytest.TempPathFactory
) -> tuple[SQLiteStore, PgVectorStore]:
    """60 BBC articles ingested into each store through the same ingestor."""
    items = [Item(aid, body, {"topic": topic}) for aid, topic, _, body in bbc_articles(12)]
    lite = SQLiteStore(tmp_path_factory.mktemp("lite") / "s.sqlite")
    pg = PgVectorStore(pg_url)
    for store in (lite, pg):
        report = Ingestor(store, embedder, "bbc").add_texts(items)
        assert len(report.added) == len(items) and not report.skipped
    return lite, pg


def _named(store, collection: str, hits: list[tuple[int, float]]) -> list[tuple[str, int, float]]:
    records = {r.id: r for r in store.chunks([c for c, _ in hits])}
    return [(records[c].source, records[c].index, s) for c, s in hits]


def test_dense_search_equals_the_sqlite_store(both: tuple[SQLiteStore, PgVectorStore], embedder: Embedder) -> None:
    lite, pg = both
    a, b = lite.collection("bbc"), pg.collection("bbc")
    assert (a.model, a.dim, a.documents, a.chunks) == (b.model, b.dim, b.documents, b.chunks)
    for query in ("oil prices and the economy", "a football cup final", "new mobile phone software"):
        v = embedder.embed([query])[0]
        x, y = _named(lite, "bbc", lite.dense("bbc", v, 10)), _named(pg, "bbc", pg.dense("bbc", v, 10))
        assert [h[:2] for h in x] == [h[:2] for h in y]
        assert max(abs(p[2] - q[2]) for p, q in zip(x, y, strict=True)) < TOL
        sports = {s for s, _, _ in _named(pg, "bbc", pg.dense("bbc", v, 10, {"topic": "sports"}))}
        assert sports and sports <= {aid for aid, topic, _, _ in bbc_articles(12) if topic == "sports"}
        assert pg.dense("bbc", v, 10, {"topic": ["tech", "sports"]})
        docs_lite = lite.document_dense("bbc", v, 5)
        docs_pg = pg.document_dense("bbc", v, 5)
        assert max(abs(x[1] - y[1]) for x, y in zip(docs_lite, docs_pg, strict=True)) < TOL
        # the passage rankers: documents by their best paragraph and by their lead sentence
        sources = dict(lite._db.execute("SELECT id, source FROM documents").fetchall())
        pg_sources = dict(pg._rows("SELECT id, source FROM bw_documents"))
        for rank in ("paragraph_dense", "lead_dense"):
            x, y = getattr(lite, rank)("bbc", v, 8), getattr(pg, rank)("bbc", v, 8)
            assert [sources[d] for d, _ in x] == [pg_sources[d] for d, _ in y]
            assert max(abs(p[1] - q[1]) for p, q in zip(x, y, strict=True)) < TOL
        sport = {pg_sources[d] for d, _ in pg.paragraph_dense("bbc", v, 8, {"topic": "sports"})}
        assert sport and sport <= {aid for aid, topic, _, _ in bbc_articles(12) if topic == "sports"}


def test_hybrid_search_finds_headlines_on_postgres(both: tuple[SQLiteStore, PgVectorStore], embedder: Embedder) -> None:
    """Headlines as queries, as the BBC figure measures it: full-text ranking differs from FTS5's
    BM25, so the rates may differ a little, but both stores must find nearly every article."""
    _, pg = both
    articles = bbc_articles(12)
    search = Searcher(pg, embedder, "bbc").search
    found = sum(aid in {s for h in search(title, 5) for s in h.sources} for aid, _, title, _ in articles)
    assert found / len(articles) >= 0.95
    lexical = pg.lexical("bbc", "Yukos bankruptcy", 5)
    assert lexical and all("yukos" in r.text.lower() for r in pg.chunks([c for c, _ in lexical]))


def test_documents_replace_delete_and_errors(pg_url: str) -> None:
    with PgVectorStore(pg_url) as store:
        store.create_collection("t", "toy", 4)
        eye = np.eye(4, dtype=np.float32)
        assert store.put_document("t", "a", "h1", ["one", "two"], eye[:2], {"kind": "x"}) == "added"
        assert store.put_document("t", "a", "h1", ["one", "two"], eye[:2]) == "unchanged"
        assert store.put_document("t", "a", "h2", ["three"], eye[2:3]) == "replaced"
        assert [(d.source, d.chunks) for d in store.documents("t")] == [("a", 1)]
        assert store.document_metadata("t", ["a"]) == {"a": {}}
        with pytest.raises(UnknownItemError, match="'zz'"):
            store.document_metadata("t", ["zz"])
        with pytest.raises(EmbeddingMismatchError, match="width 4"):
            store.put_document("t", "b", "h", ["x"], np.ones((1, 3), dtype=np.float32))
        with pytest.raises(EmbeddingMismatchError, match="not 8"):
            store.create_collection("t", "toy", 8)
        with pytest.raises(ValueError, match="NUL"):
            store.put_document("t", "b", "h", ["nul\x00"], eye[:1])
        with pytest.raises(UnknownCollectionError, match="'nope' does not exist"):
            store.dense("nope", eye[0], 1)
        assert store.delete_document("t", "a") and not store.delete_document("t", "a")
        store.drop_collection("t")
        assert "t" not in [c.name for c in store.collections()]


def test_a_write_that_fails_midway_leaves_no_half_document(pg_url: str) -> None:
    """The chunk rows of a document fail after its document row went in (a constraint the test
    adds stands in for a crash or a full disk): the transaction leaves nothing behind."""
    with PgVectorStore(pg_url) as store:
        store.create_collection("crash", "toy", 4)
        eye = np.eye(4, dtype=np.float32)
        store.put_document("crash", "kept", "h1", ["first"], eye[:1])
        store._db.execute("ALTER TABLE bw_chunks ADD CONSTRAINT no_boom CHECK (text <> 'boom')")
        try:
            with pytest.raises(Exception, match="no_boom"):
                store.put_document("crash", "half", "h2", ["fine", "boom"], eye[:2])
        finally:
            store._db.execute("ALTER TABLE bw_chunks DROP CONSTRAINT no_boom")
        assert [d.source for d in store.documents("crash")] == ["kept"]
        assert store.check_integrity() == []
        # and the check does see a half document when one is made by hand
        store._db.execute("DELETE FROM bw_chunks WHERE text = 'first'")
        assert any("'kept': 0 of its 1 chunks" in p for p in store.check_integrity())
        store.drop_collection("crash")


def test_cli_and_pipelines_take_a_postgres_url(pg_url: str, tmp_path: Path, minilm_dir: Path) -> None:
    (tmp_path / "volcano.txt").write_text("Mount Ferrowick is a volcano. It last erupted in 1911.\n", encoding="utf-8")
    (tmp_path / "ferry.txt").write_text("The night ferry to Sollen leaves at 23:40 from pier 4.\n", encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert main(["rag", "add", str(tmp_path), "--store", pg_url, "-c", "cli", "--json"]) == 0
        out.truncate(0)
        out.seek(0)
        assert (
            main(["rag", "search", "when does the ferry leave", "--k", "1", "--json", "--store", pg_url, "-c", "cli"])
            == 0
        )
    hits = json.loads(out.getvalue())
    assert Path(hits[0]["source"]).name == "ferry.txt" and "Traceback" not in err.getvalue()

    rec = pipeline("recommendation", model=str(minilm_dir), store=pg_url, collection="films")
    rec.add(
        [
            {"id": "alien", "text": "A crew in space is hunted by a deadly creature."},
            {"id": "gravity", "text": "Astronauts stranded in orbit after debris hits."},
            {"id": "notebook", "text": "A summer romance remembered in old age."},
        ]
    )
    assert rec.similar("alien", k=1)[0].id == "gravity"


def test_lexical_rank_weighs_rare_words_over_common_ones(pg_url: str) -> None:
    """A headline's rare word (a name) must count for more than a word every document has, as
    BM25's IDF makes it count in the SQLite store; PostgreSQL's own ranking would not."""
    with PgVectorStore(pg_url) as store:
        store.create_collection("idf", "toy", 4)
        texts = {
            "common": "The economy grew. Economy watchers said the economy was strong.",
            "rare": "Zanzibar cloves sold well at the market this year.",
            **{f"filler{i}": f"Report {i} on the economy and prices." for i in range(8)},
        }
        vec = np.eye(4, dtype=np.float32)[:1]
        for source, text in texts.items():
            store.put_document("idf", source, source, [text], vec)
        top_chunk = store.lexical("idf", "Zanzibar economy", 1)[0][0]
        assert store.chunks([top_chunk])[0].source == "rare"
        top_doc = store.document_lexical("idf", "Zanzibar economy", 1)[0][0]
        assert top_doc == store.chunk_places("idf", [top_chunk])[top_chunk][0]  # the "rare" document
        store.drop_collection("idf")
