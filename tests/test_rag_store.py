"""The store, readers, chunking, search and CLI on small real inputs (MiniLM, real SQLite files,
real PDFs), and the store's consistency after a process is killed mid-ingest."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from brainwork.cli import main
from brainwork.pipelines import pipeline
from brainwork.rag.chunking import Chunker
from brainwork.rag.errors import (
    DocumentTooLargeError,
    EmbeddingMismatchError,
    EmptyQueryError,
    UnknownCollectionError,
    UnknownItemError,
    UnreadableDocumentError,
)
from brainwork.rag.ingest import Embedder, Ingestor, Item
from brainwork.rag.readers import extract_text, read_bytes
from brainwork.rag.search import Searcher
from brainwork.rag.store import Passages, SQLiteStore, match_expression
from tests.rag_helpers import BBC, write_pdf

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def embedder(minilm_dir: Path) -> Embedder:
    return Embedder(str(minilm_dir))


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    """A folder of each kind, plus files that cannot be read."""
    d = tmp_path / "docs"
    d.mkdir()
    (d / "volcano.txt").write_text(
        "Mount Ferrowick is a volcano in the north of the island.\n\nIt last erupted in 1911, covering the "
        "village of Lannet in ash. Scientists watch it with seismometers.\n",
        encoding="utf-8",
    )
    (d / "notes.md").write_text(
        "# Orchard notes\n\nThe **quince** trees were planted by [Mira Holt](https://example.org) in 1998.\n",
        encoding="utf-8",
    )
    (d / "page.html").write_text(
        "<!doctype html><html><head><style>p{color:red}</style><script>var secret='no';</script></head>"
        "<body><h1>Ferries</h1><p>The night ferry to Sollen leaves at 23:40 from pier 4.</p></body></html>",
        encoding="utf-8",
    )
    write_pdf(d / "manual.pdf", ["The Kestrel pump must be primed with 2 litres of water.", "Page two: warranty."])
    (d / "broken.pdf").write_bytes(b"%PDF-1.7\n1 0 obj << /Type /Catalog >> garbage with no xref")
    (d / "image.txt").write_bytes(bytes(range(256)) * 8)
    (d / "latin1.txt").write_bytes("caf\xe9 cr\xe8me br\xfbl\xe9e".encode("latin-1"))
    (d / "ignored.bin").write_bytes(b"\x00\x01")  # not a readable kind: folders skip it silently
    return d


# ---- readers ---------------------------------------------------------------------------------------
def test_readers_extract_each_kind(docs: Path) -> None:
    text = extract_text("notes.md", (docs / "notes.md").read_bytes())
    assert "quince trees were planted by Mira Holt in 1998" in text and "https" not in text
    html = extract_text("page.html", (docs / "page.html").read_bytes())
    assert "night ferry to Sollen" in html and "secret" not in html and "color" not in html
    pdf = extract_text("manual.pdf", (docs / "manual.pdf").read_bytes())
    assert "Kestrel pump must be primed" in pdf and "warranty" in pdf


@pytest.mark.parametrize(
    ("name", "words"),
    [("broken.pdf", "PDF could not be parsed"), ("image.txt", "binary"), ("latin1.txt", "not UTF-8")],
)
def test_readers_refuse_unreadable_files_by_name(docs: Path, name: str, words: str) -> None:
    with pytest.raises(UnreadableDocumentError, match=words) as e:
        extract_text(str(docs / name), (docs / name).read_bytes())
    assert name in str(e.value)


def test_size_limit_and_missing_file(docs: Path) -> None:
    with pytest.raises(DocumentTooLargeError, match=r"volcano\.txt: \d+ bytes is over the 50-byte limit"):
        read_bytes(docs / "volcano.txt", max_bytes=50)
    with pytest.raises(UnreadableDocumentError, match=r"nothing\.txt"):
        read_bytes(docs / "nothing.txt")


# ---- chunking -------------------------------------------------------------------------------------
def test_chunks_fit_keep_paragraphs_and_overlap(embedder: Embedder) -> None:
    body = (BBC / "politics" / "001.txt").read_text(encoding="utf-8")
    chunker = Chunker(embedder.count_tokens, max_tokens=96, overlap=24)
    chunks = chunker.split(body)
    assert len(chunks) >= 4
    assert max(embedder.count_tokens(chunks)) <= 96
    # every word of the article is in some chunk
    words = set(body.split())
    assert words <= set(" ".join(chunks).split())
    # a paragraph that fits is never cut: each short paragraph appears whole in one chunk
    paragraphs = [" ".join(p.split()) for p in body.split("\n\n") if p.strip()]
    short = [p for p, n in zip(paragraphs, embedder.count_tokens(paragraphs), strict=True) if n <= 48]
    assert short and all(any(p in c for c in chunks) for p in short)
    # consecutive chunks share text when the boundary falls inside a paragraph
    assert any(c.split(". ")[-1][:40] in chunks[i + 1] for i, c in enumerate(chunks[:-1]))


def test_chunks_split_a_sentence_longer_than_a_chunk(embedder: Embedder) -> None:
    sentence = " ".join(f"word{i}" for i in range(400))
    chunks = Chunker(embedder.count_tokens, max_tokens=64, overlap=0).split(sentence)
    assert max(embedder.count_tokens(chunks)) <= 64
    assert " ".join(chunks).split() == sentence.split()


def test_passages_are_paragraphs_and_the_lead_sentence(embedder: Embedder) -> None:
    body = (BBC / "politics" / "001.txt").read_text(encoding="utf-8").split("\n", 1)[1]  # after the title
    paragraphs = [" ".join(p.split()) for p in body.split("\n\n") if p.strip()]
    chunker = Chunker(embedder.count_tokens, max_tokens=48, overlap=8)
    lead, passages = chunker.passages(body)
    assert lead == paragraphs[0]  # this article opens with a one-sentence paragraph
    assert chunker.passages("First one. Second one!\n\nNext paragraph.") == (
        "First one.",
        ["First one. Second one!", "Next paragraph."],
    )
    assert max(embedder.count_tokens(passages)) <= 48
    # a paragraph that fits is one passage, whole; a longer one is cut into pieces, in order, with
    # no overlap: the passages hold the article's words exactly once
    fits = [p for p, n in zip(paragraphs, embedder.count_tokens(paragraphs), strict=True) if n <= 48]
    assert fits and all(p in passages for p in fits) and len(passages) > len(paragraphs)
    assert " ".join(passages).split() == " ".join(paragraphs).split()
    assert chunker.passages("  \n\n ") == ("", [])
    assert chunker.passages("One line without a full stop") == (
        "One line without a full stop",
        ["One line without a full stop"],
    )


# ---- store and ingest --------------------------------------------------------------------------
def test_ingest_folder_reports_and_skips_bad_files(tmp_path: Path, docs: Path, embedder: Embedder) -> None:
    with SQLiteStore(tmp_path / "s.sqlite") as store:
        ingest = Ingestor(store, embedder, "docs")
        report = ingest.add_files([docs], progress=False)
        assert sorted(Path(s).name for s in report.added) == ["manual.pdf", "notes.md", "page.html", "volcano.txt"]
        assert sorted(Path(s).name for s, _ in report.skipped) == ["broken.pdf", "image.txt", "latin1.txt"]
        assert all(Path(s).name in why for s, why in report.skipped)
        info = store.collection("docs")
        assert (info.documents, info.chunks, info.dim) == (4, report.chunks, 384)

        again = ingest.add_files([docs], progress=False)  # unchanged: nothing written
        assert (again.added, again.replaced, again.chunks, len(again.unchanged)) == ([], [], 0, 4)

        hits = Searcher(store, embedder, "docs").search("When did the volcano last erupt?", k=2)
        assert Path(hits[0].source).name == "volcano.txt" and "1911" in hits[0].text
        assert Path(Searcher(store, embedder, "docs").search("Kestrel pump priming", 1)[0].source).name == "manual.pdf"

        # a changed file replaces its chunks: the old text is gone from both indexes
        (docs / "volcano.txt").write_text("Mount Ferrowick has been dormant since records began.", encoding="utf-8")
        changed = ingest.add_files([docs / "volcano.txt"], progress=False)
        assert [Path(s).name for s in changed.replaced] == ["volcano.txt"]
        assert store.lexical("docs", "Lannet", 5) == []
        top = Searcher(store, embedder, "docs").search("volcano eruption", 1)[0]
        assert "dormant" in top.text and "1911" not in top.text
        assert store.collection("docs").documents == 4
        assert store.check_integrity() == []


def test_re_adding_unchanged_texts_embeds_nothing(tmp_path: Path, embedder: Embedder) -> None:
    items = [Item("a", "Apples grow on the hill.\n\nPears grow by the river."), Item("b", "Plums are purple.")]
    calls: list[int] = []

    class Counting:
        name, dim = embedder.name, embedder.dim

        def embed(self, texts: list[str]) -> np.ndarray:
            calls.append(len(texts))
            return embedder.embed(texts)

        def chunker(self) -> Chunker:
            return embedder.chunker()

    with SQLiteStore(tmp_path / "s.sqlite") as store:
        ingest = Ingestor(store, Counting(), "c")  # type: ignore[arg-type]
        assert ingest.add_texts(items).added == ["a", "b"] and calls == [2 + 3 + 2]  # chunks, leads, paragraphs
        again = ingest.add_texts([*items, Item("c", "Cherries are red.")])
        assert again.unchanged == ["a", "b"] and again.added == ["c"] and calls == [7, 3]


def test_bad_input_errors_name_the_item(tmp_path: Path, embedder: Embedder) -> None:
    with SQLiteStore(tmp_path / "s.sqlite") as store:
        ingest = Ingestor(store, embedder, "c", max_bytes=1000)
        report = ingest.add_texts([Item("big", "x " * 600), Item("blank", "  "), Item("ok", "A fine text.")])
        assert report.added == ["ok"]
        assert [s for s, _ in report.skipped] == ["big", "blank"]
        assert "big: 1200 bytes is over the 1000-byte limit" in report.skipped[0][1]
        with pytest.raises(UnknownCollectionError, match=r"collection 'nope' does not exist.*'c'"):
            Searcher(store, embedder, "nope")
        with pytest.raises(EmptyQueryError, match="query"):
            Searcher(store, embedder, "c").search("   ")
        with pytest.raises(ValueError, match="collection: invalid name"):
            store.create_collection("../etc", "m", 3)
        with pytest.raises(ValueError, match="where: invalid metadata key"):
            store.dense("c", np.ones(384), 1, where={"a'); drop table chunks; --": 1})


def test_metadata_filter_and_fts_query_quoting(tmp_path: Path, embedder: Embedder) -> None:
    with SQLiteStore(tmp_path / "s.sqlite") as store:
        Ingestor(store, embedder, "c").add_texts(
            [
                Item("a", "Apples grow in the orchard on the hill.", {"kind": "fruit"}),
                Item("b", "Apples of the computer kind run software.", {"kind": "tech"}),
            ]
        )
        search = Searcher(store, embedder, "c")
        assert {h.source for h in search.search("apples", 5)} == {"a", "b"}
        assert [h.source for h in search.search("apples", 5, where={"kind": "tech"})] == ["b"]
        assert {h.source for h in search.search("apples", 5, where={"kind": ["tech", "fruit"]})} == {"a", "b"}
        # FTS5 operators in a query are words, not syntax
        assert match_expression('apples AND "NEAR(" OR -x*') == '"apples" OR "near" OR "x"'
        assert [h.source for h in Searcher(store, embedder, "c", "lexical").search('orchard" OR ', 5)] == ["a"]


# ---- a process killed mid-ingest -------------------------------------------------------------------
_WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from brainwork.rag.store import SQLiteStore
    store = SQLiteStore(sys.argv[1])
    store.create_collection("c", "random", 64)
    rng = np.random.default_rng(0)
    for d in range(10_000):
        chunks = [f"document {d} chunk {i} " + "filler words " * 20 for i in range(2000)]
        store.put_document("c", f"doc{d}", f"h{d}", chunks, rng.standard_normal((2000, 64)).astype("float32"))
    """
)


def test_kill_mid_write_loses_nothing_committed(tmp_path: Path) -> None:
    """Documents of 2,000 chunks take long enough to write that SIGKILL lands inside a transaction;
    afterwards every committed document is whole and nothing of the interrupted one remains."""
    db = tmp_path / "crash.sqlite"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(db)], env=env)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            time.sleep(0.05)
            try:
                with sqlite3.connect(db, timeout=5) as peek:
                    if peek.execute("SELECT count(*) FROM documents").fetchone()[0] >= 3:
                        break
            except sqlite3.OperationalError:  # not created yet
                continue
        time.sleep(0.15)  # into the next document's transaction
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with SQLiteStore(db) as store:
        assert store.check_integrity() == []
        docs = store.documents("c")
        assert len(docs) >= 3
        assert [d.source for d in docs] == [f"doc{i}" for i in range(len(docs))]
        assert all(d.chunks == 2000 for d in docs)
        assert store.collection("c").chunks == 2000 * len(docs)
        assert store.lexical("c", f"document {len(docs) - 1} chunk 1999", 1)  # the last one is searchable


def test_cli_killed_mid_ingest_then_resumed(tmp_path: Path) -> None:
    """`brainwork rag add` killed after some files are in: the store is consistent, and running it
    again adds the rest and leaves the earlier ones unchanged."""
    folder = tmp_path / "bbc"
    folder.mkdir()
    # enough files that the ingest is still running when the poll below sees the third one,
    # however fast the machine (16 could all land between two polls)
    files = 80
    for f in sorted((BBC / "tech").glob("*.txt"))[:files]:
        (folder / f.name).write_bytes(f.read_bytes())
    db = tmp_path / "s.sqlite"
    cmd = [sys.executable, "-m", "brainwork", "rag", "add", str(folder), "--store", str(db), "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        done = 0
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
            try:
                with sqlite3.connect(db, timeout=5) as peek:
                    done = peek.execute("SELECT count(*) FROM documents").fetchone()[0]
            except sqlite3.OperationalError:
                continue
            if done >= 3:
                break
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert 3 <= done < files, "the ingest must be killed part way"
    with SQLiteStore(db) as store:
        assert store.check_integrity() == []
        before = {d.source for d in store.documents("default")}
    again = _cli(*cmd[3:], "--json")  # the same command, run to its end
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert set(report["unchanged"]) == before
    assert len(report["added"]) == files - len(before)
    with SQLiteStore(db) as store:
        assert store.check_integrity() == []
        assert store.collection("default").documents == files


# ---- CLI and pipeline -----------------------------------------------------------------------------
@dataclass
class _Run:
    returncode: int
    stdout: str
    stderr: str


def _cli(*args: str) -> _Run:
    """`brainwork ARGS` through the CLI's own entry point, in this process (a fresh interpreter
    per call would spend most of the test importing torch)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return _Run(code, out.getvalue(), err.getvalue())


def test_cli_add_search_ls_and_errors(tmp_path: Path, docs: Path) -> None:
    db = str(tmp_path / "cli.sqlite")
    added = _cli("rag", "add", str(docs), "--store", db, "--json")
    assert added.returncode == 1  # some files were skipped; the rest are in
    report = json.loads(added.stdout)
    assert len(report["added"]) == 4 and len(report["skipped"]) == 3
    assert "broken.pdf" in added.stderr and "image.txt" in added.stderr and "Traceback" not in added.stderr

    found = _cli("rag", "search", "ferry to Sollen", "--k", "2", "--json", "--store", db)
    hits = json.loads(found.stdout)
    assert len(hits) == 2 and Path(hits[0]["source"]).name == "page.html" and hits[0]["chunk"] == 0
    assert set(hits[0]) >= {"source", "chunk", "score", "text"}

    listed = _cli("rag", "ls", "--store", db, "--json")
    assert json.loads(listed.stdout)[0]["documents"] == 4
    assert "volcano.txt" in _cli("rag", "ls", "-c", "default", "--store", db).stdout

    missing = _cli("rag", "search", "x", "-c", "nope", "--store", db)
    assert missing.returncode == 1 and "collection 'nope' does not exist" in missing.stderr
    assert "Traceback" not in missing.stderr
    empty = _cli("rag", "search", " ", "--store", db)
    assert empty.returncode == 1 and "query: empty" in empty.stderr

    refused = _cli("rag", "ask", "What is the airspeed of an unladen swallow?", "--store", db, "--json")
    assert refused.returncode == 0, refused.stderr
    assert json.loads(refused.stdout)["refused"] is True


def test_cli_rec(tmp_path: Path) -> None:
    db = str(tmp_path / "rec.sqlite")
    items = tmp_path / "items.jsonl"
    rows = [
        {"id": "pasta", "text": "Spaghetti with tomato sauce and basil.", "metadata": {"kind": "food"}},
        {"id": "pizza", "text": "Pizza margherita with mozzarella and tomato.", "metadata": {"kind": "food"}},
        {"id": "risotto", "text": "Creamy mushroom risotto with parmesan.", "metadata": {"kind": "food"}},
        {"id": "laptop", "text": "A thin laptop with a fast processor.", "metadata": {"kind": "tech"}},
        {"id": "phone", "text": "A smartphone with a great camera.", "metadata": {"kind": "tech"}},
    ]
    items.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    assert _cli("rec", "add", str(items), "--store", db).returncode == 0
    similar = json.loads(_cli("rec", "similar", "pasta", "--k", "2", "--json", "--store", db).stdout)
    assert {r["id"] for r in similar} == {"pizza", "risotto"}
    recs = _cli("rec", "recommend", "--liked", "laptop", "--k", "1", "--json", "--store", db)
    assert [r["id"] for r in json.loads(recs.stdout)] == ["phone"]
    unknown = _cli("rec", "similar", "sushi", "--store", db)
    assert unknown.returncode == 1 and "'sushi'" in unknown.stderr


def test_pipelines_share_a_store(tmp_path: Path, minilm_dir: Path) -> None:
    db = tmp_path / "p.sqlite"
    rec = pipeline("recommendation", model=str(minilm_dir), store=db, collection="films")
    rec.add(
        [
            {"id": "alien", "text": "A crew in space is hunted by a deadly creature.", "metadata": {"genre": "scifi"}},
            {
                "id": "gravity",
                "text": "Astronauts stranded in orbit after debris hits.",
                "metadata": {"genre": "scifi"},
            },
            {"id": "notebook", "text": "A summer romance remembered in old age.", "metadata": {"genre": "romance"}},
            {"id": "titanic", "text": "Lovers meet aboard a doomed ocean liner.", "metadata": {"genre": "romance"}},
        ]
    )
    assert rec.similar("alien", k=1)[0].id == "gravity"
    picks = rec.recommend(liked=["notebook"], disliked=["alien"], k=3)
    assert picks[0].id == "titanic" and "notebook" not in [p.id for p in picks]
    assert [p.id for p in rec.recommend(liked=["alien"], seen=["gravity"], k=1)] != ["gravity"]
    assert rec.recommend(liked=["alien"], k=2, where={"genre": "romance"})[0].metadata["genre"] == "romance"
    with pytest.raises(UnknownItemError, match="'nosuch'"):
        rec.recommend(liked=["nosuch"])
    rag = pipeline("rag", store=db, collection="notes", embedding_model=str(minilm_dir))
    rag.add_texts([Item("n1", "The staff meeting moved to Thursday at 10:00 in room B.")])
    assert rag.search("when is the staff meeting", k=1)[0].source == "n1"
    assert {c.name for c in rag.collections()} == {"films", "notes"}


def test_passage_rankers_match_brute_force(tmp_path: Path, embedder: Embedder) -> None:
    """paragraph_dense ranks documents by their best paragraph's cosine, lead_dense by the lead
    sentence's (against numpy over the same vectors, 1e-6); replacing or deleting a document takes
    its passages with it; documents stored without passages are absent from both rankings."""
    articles = [(p.stem, p.read_text(encoding="utf-8")) for p in sorted((BBC / "tech").glob("*.txt"))[:12]]
    with SQLiteStore(tmp_path / "s.sqlite") as store:
        report = Ingestor(store, embedder, "c").add_texts([Item(a, body) for a, body in articles[:10]])
        assert len(report.added) == 10
        # two more documents with chunks only, as a store written before passages existed holds them
        for source, body in articles[10:]:
            chunks = embedder.chunker().split(body)
            store.put_document("c", source, "old", chunks, embedder.embed(chunks))
        chunker = embedder.chunker()
        ids = dict(store._db.execute("SELECT source, id FROM documents").fetchall())
        # the stored rows are the passages' vectors (bfloat16 embeddings vary with the batch: 0.999)
        leads, paras = {}, {}
        for source, body in articles[:10]:
            lead, paragraphs = chunker.passages(body)
            rows = store._db.execute(
                "SELECT embedding FROM passages WHERE document_id = ? ORDER BY idx", (ids[source],)
            )
            stored = np.stack([np.frombuffer(r[0], dtype=np.float32) for r in rows])  # (1 + P, 384)
            assert stored.shape == (1 + len(paragraphs), 384)
            assert (np.sum(stored * embedder.embed([lead, *paragraphs]), axis=1) > 0.999).all()
            leads[source], paras[source] = stored[0], stored[1:]
        for query in ("mobile phone networks", "video games console sales", "internet security virus"):
            q = embedder.embed([query])[0]
            want_para = sorted(((float((m @ q).max()), s) for s, m in paras.items()), reverse=True)
            got_para = store.paragraph_dense("c", q, 12)
            assert [ids[s] for _, s in want_para] == [d for d, _ in got_para]
            assert max(abs(w - g) for (w, _), (_, g) in zip(want_para, got_para, strict=True)) < 1e-6
            want_lead = sorted(((float(v @ q), s) for s, v in leads.items()), reverse=True)
            got_lead = store.lead_dense("c", q, 3)
            assert [ids[s] for _, s in want_lead[:3]] == [d for d, _ in got_lead]
            assert max(abs(w - g) for (w, _), (_, g) in zip(want_lead[:3], got_lead, strict=True)) < 1e-6
        first = articles[0][0]
        Ingestor(store, embedder, "c").add_texts([Item(first, "Only this sentence now. And a second one.")])
        assert len(store.paragraph_dense("c", q, 20)) == 10
        assert store.delete_document("c", articles[1][0])
        assert len(store.paragraph_dense("c", q, 20)) == len(store.lead_dense("c", q, 20)) == 9
        (n,) = store._db.execute("SELECT count(*) FROM passages").fetchone()
        assert n == sum(len(chunker.passages(b)[1]) + 1 for _, b in articles[2:10]) + 2
        assert store.check_integrity() == []
        with pytest.raises(EmbeddingMismatchError, match="bad: passages need a lead vector"):
            store.put_document(
                "c", "bad", "h", ["x"], np.ones((1, 384)), passages=Passages(np.ones(3), np.ones((1, 384)))
            )
        assert store.check_integrity() == []


def test_a_document_that_opens_with_the_query_ranks_first(tmp_path: Path, embedder: Embedder) -> None:
    """Two documents hold the same sentence: one in its last chunk, alone, the other in its first,
    beside an unrelated one. Chunk and document scores prefer the first (a purer match); the lead
    rankers put the document that opens with it first."""
    fact = "New zebra crossing rules start in the town centre next week."
    filler = [
        "The library extends its opening hours on Saturdays during the exam season.",
        "A local bakery won a regional prize for its sourdough loaves and pastries.",
        "Volunteers planted two hundred trees along the river path last autumn.",
    ]
    with SQLiteStore(tmp_path / "s.sqlite") as store:
        store.create_collection("c", embedder.name, embedder.dim)
        docs = {
            "opens": [fact + " Parking stays free on Sundays.", filler[0], filler[1]],
            "ends": [filler[2], filler[1], fact],
        }
        for source, chunks in docs.items():
            store.put_document("c", source, source, chunks, embedder.embed(chunks))
        places = store.chunk_places("c", [1, 2, 3, 4, 5, 6])
        assert sorted(places.values()) == [(1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (2, 2)]
        query = "zebra crossing rules"
        for mode in ("dense", "lexical"):  # alone, each ranker prefers the purer chunk
            assert Searcher(store, embedder, "c", mode).search(query, 1)[0].source == "ends"
        assert [h.source for h in Searcher(store, embedder, "c").search(query, 2)] == ["opens", "ends"]


@pytest.mark.parametrize("first", ["match", "other"])
def test_hybrid_search_ranks_by_passages(tmp_path: Path, embedder: Embedder, first: str) -> None:
    """Two documents with the same chunk text and vectors tie in every chunk and document ranker;
    only their passages differ, and the one whose lead and paragraph match the query must win,
    whichever was written first."""
    chunk = ["Notes from the council meeting held on Tuesday evening."]
    passages = {
        "match": ["New zebra crossing rules start in the town centre.", "The zebra crossing rules apply from May."],
        "other": ["A local bakery won a prize for its sourdough.", "The bakery opens a second shop in spring."],
    }
    order = [first, "other" if first == "match" else "match"]
    with SQLiteStore(tmp_path / "s.sqlite") as store:
        store.create_collection("c", embedder.name, embedder.dim)
        for source in order:
            v = embedder.embed(passages[source])
            store.put_document("c", source, source, chunk, embedder.embed(chunk), passages=Passages(v[0], v))
        hits = Searcher(store, embedder, "c").search("zebra crossing rules", 2)
        # one text, so one hit; the document whose passages match is the one it names first
        assert [h.sources for h in hits] == [("match", "other")]


@pytest.mark.parametrize("mode", ["hybrid", "dense", "lexical"])
def test_the_same_text_twice_is_one_hit(tmp_path: Path, embedder: Embedder, mode: str) -> None:
    """An article stored under two names fills one of the k places, naming both; k places still
    hold k different texts."""
    ferry = "The night ferry to Sollen leaves at 23:40 from pier 4. Tickets for the ferry are sold on board."
    texts = {
        "a.txt": ferry,
        "copy-of-a.txt": ferry.replace(". ", ".  "),  # the same words, other spacing
        "b.txt": "The day ferry to Sollen leaves at noon from pier 2; its tickets are sold at the pier.",
        "c.txt": "Mount Ferrowick last erupted in 1911, covering the village of Lannet in ash.",
    }
    with SQLiteStore(tmp_path / "s.sqlite") as store:
        Ingestor(store, embedder, "c").add_texts([Item(k, v) for k, v in texts.items()])
        searcher = Searcher(store, embedder, "c", mode=mode)
        hits = searcher.search("ferry to Sollen tickets", 2)
        assert len(hits) == 2 and len({h.text for h in hits}) == 2
        assert {hits[0].source, *hits[0].also} == {"a.txt", "copy-of-a.txt"}
        assert hits[1].sources == ("b.txt",)
        assert hits[0].as_dict()["also"] == list(hits[0].also)
        # asked for more places than there are texts: every text once (BM25 does not match c.txt)
        assert len(searcher.search("ferry to Sollen tickets", 4)) == (2 if mode == "lexical" else 3)


def test_an_answer_without_markers_cites_the_sources_it_copied() -> None:
    from brainwork.rag.answer import Answer, Source

    texts = [
        "The night ferry to Sollen leaves at 23:40 from pier 4. Tickets are sold on board.",
        "Mount Ferrowick last erupted in 1911, covering the village of Lannet in ash.",
    ]
    sources = [Source(i, f"doc{i}", 0, 1.0, t) for i, t in enumerate(texts, 1)]

    def cited(text: str) -> list[str]:
        return [s.source for s in Answer("q", text, sources).cited]

    assert cited("The volcano last erupted in 1911, covering the village of Lannet in ash.") == ["doc2"]
    assert cited("Mount Ferrowick erupted in 1911 [2]. The ferry leaves at 23:40 [1].") == ["doc2", "doc1"]
    # markers win over copying; a paraphrase, a short or an unrelated sentence cites nothing
    assert cited("The night ferry to Sollen leaves at 23:40 from pier 4 [2].") == ["doc2"]
    assert cited("A ferry goes to Sollen late at night.") == []
    assert cited("At 23:40.") == []
    assert cited("Prices of homes in the UK rose a seasonally adjusted 0.5% in February.") == []
