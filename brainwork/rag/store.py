"""`VectorStore`: what retrieval needs from a store; `SQLiteStore`: the default, one SQLite file.

One file holds collections, documents (source, content hash, metadata, a mean vector), chunks
(text and a float32 embedding blob), passages (vectors of each paragraph and of the lead sentence,
finer units for search to rank documents by) and an FTS5 index of the chunk text (BM25, Porter
stemming).
Every document is written in one transaction, so a crash mid-ingest keeps every earlier document
and leaves no half document; WAL mode lets readers query while a writer ingests.

Dense search is exact: the collection's chunk matrix (N, D) is read once into memory and cached
until a write bumps the collection's version, then one matrix-vector product ranks all chunks.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from brainwork.rag.errors import EmbeddingMismatchError, UnknownCollectionError, UnknownItemError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_META_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
# Words too common to narrow a BM25 search; each would make the OR query match most chunks.
_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "for",
        "from",
        "has",
        "have",
        "he",
        "her",
        "his",
        "i",
        "in",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "our",
        "she",
        "that",
        "the",
        "their",
        "them",
        "they",
        "this",
        "to",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "will",
        "with",
        "you",
        "your",
        "how",
        "did",
        "does",
        "do",
        "not",
        "no",
    ]
)

Where = dict[str, Any]  # metadata key -> value, or list of values (any of them)


def default_store_path() -> Path:
    """$BRAINWORK_STORE, else $XDG_DATA_HOME/brainwork/store.sqlite (~/.local/share/... by default)."""
    if os.environ.get("BRAINWORK_STORE"):
        return Path(os.environ["BRAINWORK_STORE"])
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "brainwork" / "store.sqlite"


@dataclass(frozen=True)
class CollectionInfo:
    name: str
    model: str  # the embedding model its vectors come from
    dim: int
    documents: int
    chunks: int


@dataclass(frozen=True)
class DocumentInfo:
    source: str  # a file path or an item id
    content_hash: str
    chunks: int
    metadata: dict[str, Any]
    added: float


@dataclass(frozen=True)
class Passages:
    """A document's finer vectors for search: its lead sentence (D,) and its paragraphs (P, D)."""

    lead: np.ndarray
    paragraphs: np.ndarray


@dataclass(frozen=True)
class ChunkRecord:
    id: int
    source: str
    index: int  # the chunk's number within its document, from 0
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)


class VectorStore(Protocol):
    """The operations search, ingest and recommendations use; a server-backed store (PostgreSQL
    with pgvector) implements the same methods."""

    def create_collection(self, name: str, model: str, dim: int) -> CollectionInfo: ...
    def collection(self, name: str) -> CollectionInfo: ...
    def collections(self) -> list[CollectionInfo]: ...
    def drop_collection(self, name: str) -> None: ...
    def document_hash(self, collection: str, source: str) -> str | None: ...
    def put_document(
        self,
        collection: str,
        source: str,
        content_hash: str,
        chunks: Sequence[str],
        vectors: np.ndarray,
        metadata: dict[str, Any] | None = None,
        passages: Passages | None = None,
    ) -> str: ...
    def delete_document(self, collection: str, source: str) -> bool: ...
    def documents(self, collection: str) -> list[DocumentInfo]: ...
    def document_vectors(self, collection: str) -> tuple[list[str], np.ndarray]: ...
    def document_metadata(self, collection: str, sources: Sequence[str]) -> dict[str, dict[str, Any]]: ...
    def dense(
        self, collection: str, query: np.ndarray, k: int, where: Where | None = None
    ) -> list[tuple[int, float]]: ...
    def lexical(self, collection: str, text: str, k: int, where: Where | None = None) -> list[tuple[int, float]]: ...
    def document_dense(
        self, collection: str, query: np.ndarray, k: int, where: Where | None = None
    ) -> list[tuple[int, float]]: ...
    def document_lexical(
        self, collection: str, text: str, k: int, where: Where | None = None
    ) -> list[tuple[int, float]]: ...
    def paragraph_dense(
        self, collection: str, query: np.ndarray, k: int, where: Where | None = None
    ) -> list[tuple[int, float]]: ...
    def lead_dense(
        self, collection: str, query: np.ndarray, k: int, where: Where | None = None
    ) -> list[tuple[int, float]]: ...
    def chunk_places(self, collection: str, chunk_ids: Sequence[int]) -> dict[int, tuple[int, int]]: ...
    def best_chunks(
        self, collection: str, doc_ids: Sequence[int], query: np.ndarray
    ) -> dict[int, tuple[int, float]]: ...
    def chunks(self, ids: Sequence[int]) -> list[ChunkRecord]: ...
    def check_integrity(self) -> list[str]: ...
    def close(self) -> None: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS collections (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, model TEXT NOT NULL, dim INTEGER NOT NULL,
    version INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS documents (
    id INTEGER PRIMARY KEY,
    collection_id INTEGER NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
    source TEXT NOT NULL, hash TEXT NOT NULL, metadata TEXT NOT NULL DEFAULT '{}',
    n_chunks INTEGER NOT NULL, embedding BLOB NOT NULL, added REAL NOT NULL,
    UNIQUE (collection_id, source)
);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY,
    document_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    collection_id INTEGER NOT NULL, idx INTEGER NOT NULL, text TEXT NOT NULL, embedding BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_by_document ON chunks(document_id);
CREATE INDEX IF NOT EXISTS chunks_by_collection ON chunks(collection_id);
-- idx -1: the lead sentence; 0, 1, ...: the paragraphs. Documents written before passages
-- existed have none: the passage rankers skip them and the others still find them.
CREATE TABLE IF NOT EXISTS passages (
    document_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    collection_id INTEGER NOT NULL, idx INTEGER NOT NULL, embedding BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS passages_by_document ON passages(document_id);
CREATE INDEX IF NOT EXISTS passages_by_collection ON passages(collection_id, document_id, idx);
"""

# Two FTS5 indexes per collection, so a search never filters other collections' matches row by
# row: fts_<id> over chunks (reading their text from `chunks`, external content) and docfts_<id>
# over whole documents (rowid = document id; BM25 over a whole article ranks it by all its words,
# which a short query such as a headline needs). Kept in step by hand, in the chunks' transaction.
_FTS = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS fts_{cid} USING fts5("
    "text, content='chunks', content_rowid='id', tokenize='porter unicode61')",
    "CREATE VIRTUAL TABLE IF NOT EXISTS docfts_{cid} USING fts5(text, tokenize='porter unicode61')",
)


@dataclass
class _Matrix:
    """A collection's chunks in memory for dense search, valid while `version` matches."""

    version: int
    chunk_ids: np.ndarray  # (N,) int64
    doc_ids: np.ndarray  # (N,) int64
    vectors: np.ndarray  # (N, D) float32, unit rows
    doc_rows: np.ndarray  # (M,) int64: document ids
    doc_vectors: np.ndarray  # (M, D) float32: each document's mean chunk vector, unit rows
    chunk_numbers: np.ndarray  # (N,) int64: each chunk's number within its document
    paragraphs: np.ndarray  # (P, D) float32: paragraph vectors, grouped by document
    paragraph_starts: np.ndarray  # (G,) int64: the first row of each document's group
    paragraph_docs: np.ndarray  # (G,) int64: the document id of each group
    leads: np.ndarray  # (L, D) float32: lead-sentence vectors
    lead_docs: np.ndarray  # (L,) int64
    # chunk id -> (document id, chunk number), filled on first use
    places: dict[int, tuple[int, int]] = field(default_factory=dict)


class SQLiteStore:
    """Collections in one SQLite file. Safe to share between threads (one lock serialises calls)."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_store_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # autocommit mode: transactions are opened explicitly (BEGIN IMMEDIATE) around each write
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a killed process loses no commit
        self._db.execute("PRAGMA foreign_keys=ON")
        # index pages read through the OS page cache (mmap) and a 64 MiB page cache: FTS5 queries on a
        # large store read many pages, and SQLite's default 2 MiB cache made them disk-bound
        self._db.execute("PRAGMA mmap_size=1073741824")
        self._db.execute("PRAGMA cache_size=-65536")
        self._db.executescript(_SCHEMA)
        self._lock = threading.RLock()
        self._matrices: dict[int, _Matrix] = {}

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ---- collections --------------------------------------------------------------------------
    def create_collection(self, name: str, model: str, dim: int) -> CollectionInfo:
        """The collection `name`, created if new; an existing one must use the same model."""
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"collection: invalid name {name!r} (letters, digits, '_', '.', '-'; up to 64)")
        with self._lock:
            row = self._db.execute("SELECT model, dim FROM collections WHERE name = ?", (name,)).fetchone()
            if row is None:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    cur = self._db.execute(
                        "INSERT INTO collections(name, model, dim, created) VALUES (?, ?, ?, ?)",
                        (name, model, dim, time.time()),
                    )
                    for ddl in _FTS:
                        self._db.execute(ddl.format(cid=int(cur.lastrowid or 0)))
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
            elif (row[0], row[1]) != (model, dim):
                raise EmbeddingMismatchError(
                    f"collection {name!r} holds {row[1]}-dimensional vectors from {row[0]!r}, not {dim} from {model!r}"
                )
            return self.collection(name)

    def collection(self, name: str) -> CollectionInfo:
        with self._lock:
            row = self._db.execute(
                "SELECT c.name, c.model, c.dim, (SELECT count(*) FROM documents d WHERE d.collection_id = c.id), "
                "(SELECT count(*) FROM chunks k WHERE k.collection_id = c.id) FROM collections c WHERE c.name = ?",
                (name,),
            ).fetchone()
        if row is None:
            raise self._unknown(name)
        return CollectionInfo(*row)

    def collections(self) -> list[CollectionInfo]:
        with self._lock:
            names = [r[0] for r in self._db.execute("SELECT name FROM collections ORDER BY name")]
        return [self.collection(n) for n in names]

    def drop_collection(self, name: str) -> None:
        with self._lock:
            cid = self._collection_id(name)
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(f"DROP TABLE IF EXISTS fts_{cid}")
                self._db.execute(f"DROP TABLE IF EXISTS docfts_{cid}")
                self._db.execute("DELETE FROM chunks WHERE collection_id = ?", (cid,))
                self._db.execute("DELETE FROM passages WHERE collection_id = ?", (cid,))
                self._db.execute("DELETE FROM documents WHERE collection_id = ?", (cid,))
                self._db.execute("DELETE FROM collections WHERE id = ?", (cid,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._matrices.pop(cid, None)

    def _collection_id(self, name: str) -> int:
        row = self._db.execute("SELECT id FROM collections WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise self._unknown(name)
        return int(row[0])

    def _unknown(self, name: str) -> UnknownCollectionError:
        known = [r[0] for r in self._db.execute("SELECT name FROM collections ORDER BY name")]
        listed = ", ".join(map(repr, known)) if known else "none yet"
        return UnknownCollectionError(f"collection {name!r} does not exist in {self.path} (collections: {listed})")

    # ---- documents ------------------------------------------------------------------------------
    def document_hash(self, collection: str, source: str) -> str | None:
        with self._lock:
            cid = self._collection_id(collection)
            row = self._db.execute(
                "SELECT hash FROM documents WHERE collection_id = ? AND source = ?", (cid, source)
            ).fetchone()
        return row[0] if row else None

    def put_document(
        self,
        collection: str,
        source: str,
        content_hash: str,
        chunks: Sequence[str],
        vectors: np.ndarray,
        metadata: dict[str, Any] | None = None,
        passages: Passages | None = None,
    ) -> str:
        """Write one document, its chunks and passages in one transaction. Returns "unchanged" when
        the same content is stored under `source` already, "replaced" when other content was, else
        "added"."""
        with self._lock:
            dim = self.collection(collection).dim
            vectors = checked_vectors(source, chunks, vectors, dim)
            rows = passage_rows(source, passages, dim)
            meta = json.dumps(metadata or {}, ensure_ascii=False, sort_keys=True)
            mean = vectors.mean(axis=0)
            mean /= max(float(np.linalg.norm(mean)), 1e-12)
            cid = self._collection_id(collection)
            self._db.execute("BEGIN IMMEDIATE")
            try:
                old = self._db.execute(
                    "SELECT id, hash FROM documents WHERE collection_id = ? AND source = ?", (cid, source)
                ).fetchone()
                if old is not None and old[1] == content_hash:
                    self._db.execute("ROLLBACK")
                    return "unchanged"
                if old is not None:
                    self._delete_rows(cid, old[0])
                cur = self._db.execute(
                    "INSERT INTO documents(collection_id, source, hash, metadata, n_chunks, embedding, added) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (cid, source, content_hash, meta, len(chunks), mean.astype(np.float32).tobytes(), time.time()),
                )
                did = cur.lastrowid
                self._db.executemany(
                    "INSERT INTO chunks(document_id, collection_id, idx, text, embedding) VALUES (?, ?, ?, ?, ?)",
                    ((did, cid, i, text, vectors[i].tobytes()) for i, text in enumerate(chunks)),
                )
                self._db.executemany(
                    "INSERT INTO passages(document_id, collection_id, idx, embedding) VALUES (?, ?, ?, ?)",
                    ((did, cid, i, v.tobytes()) for i, v in rows),
                )
                self._db.execute(
                    f"INSERT INTO fts_{cid}(rowid, text) SELECT id, text FROM chunks WHERE document_id = ?", (did,)
                )
                self._db.execute(f"INSERT INTO docfts_{cid}(rowid, text) VALUES (?, ?)", (did, "\n\n".join(chunks)))
                self._db.execute("UPDATE collections SET version = version + 1 WHERE id = ?", (cid,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return "added" if old is None else "replaced"

    def delete_document(self, collection: str, source: str) -> bool:
        with self._lock:
            cid = self._collection_id(collection)
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(
                    "SELECT id FROM documents WHERE collection_id = ? AND source = ?", (cid, source)
                ).fetchone()
                if row is not None:
                    self._delete_rows(cid, row[0])
                    self._db.execute("UPDATE collections SET version = version + 1 WHERE id = ?", (cid,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return row is not None

    def _delete_rows(self, cid: int, did: int) -> None:
        """A document's rows and index entries (inside the caller's transaction)."""
        self._db.execute(
            f"INSERT INTO fts_{cid}(fts_{cid}, rowid, text) "
            "SELECT 'delete', id, text FROM chunks WHERE document_id = ?",
            (did,),
        )
        self._db.execute(f"DELETE FROM docfts_{cid} WHERE rowid = ?", (did,))
        self._db.execute("DELETE FROM chunks WHERE document_id = ?", (did,))
        self._db.execute("DELETE FROM passages WHERE document_id = ?", (did,))
        self._db.execute("DELETE FROM documents WHERE id = ?", (did,))

    def documents(self, collection: str) -> list[DocumentInfo]:
        with self._lock:
            cid = self._collection_id(collection)
            rows = self._db.execute(
                "SELECT source, hash, n_chunks, metadata, added FROM documents WHERE collection_id = ? ORDER BY id",
                (cid,),
            ).fetchall()
        return [DocumentInfo(r[0], r[1], r[2], json.loads(r[3]), r[4]) for r in rows]

    def document_vectors(self, collection: str) -> tuple[list[str], np.ndarray]:
        """Every document's source and its mean chunk vector, unit length: (N,), (N, D)."""
        with self._lock:
            info = self.collection(collection)
            cid = self._collection_id(collection)
            rows = self._db.execute(
                "SELECT source, embedding FROM documents WHERE collection_id = ? ORDER BY id", (cid,)
            ).fetchall()
        if not rows:
            return [], np.zeros((0, info.dim), dtype=np.float32)
        matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), info.dim)
        return [r[0] for r in rows], matrix

    def document_metadata(self, collection: str, sources: Sequence[str]) -> dict[str, dict[str, Any]]:
        with self._lock:
            cid = self._collection_id(collection)
            out = {}
            for source in sources:
                row = self._db.execute(
                    "SELECT metadata FROM documents WHERE collection_id = ? AND source = ?", (cid, source)
                ).fetchone()
                if row is None:
                    raise UnknownItemError(f"item {source!r} is not in collection {collection!r}")
                out[source] = json.loads(row[0])
        return out

    # ---- search ---------------------------------------------------------------------------------
    def dense(self, collection: str, query: np.ndarray, k: int, where: Where | None = None) -> list[tuple[int, float]]:
        """The k chunks of highest cosine with `query` (D,), as (chunk id, cosine), best first."""
        m, allowed = self._searched(collection, where)
        return _top_k(m.vectors, m.chunk_ids, m.doc_ids, query, k, allowed)

    def document_dense(
        self, collection: str, query: np.ndarray, k: int, where: Where | None = None
    ) -> list[tuple[int, float]]:
        """The k documents whose mean chunk vector is closest to `query`, as (document id, cosine)."""
        m, allowed = self._searched(collection, where)
        return _top_k(m.doc_vectors, m.doc_rows, m.doc_rows, query, k, allowed)

    def paragraph_dense(
        self, collection: str, query: np.ndarray, k: int, where: Where | None = None
    ) -> list[tuple[int, float]]:
        """The k documents whose best paragraph is closest to `query`, as (document id, cosine)."""
        m, allowed = self._searched(collection, where)
        if not len(m.paragraphs):
            return []
        scores = m.paragraphs @ unit(query, m.paragraphs.shape[1])  # (P,)
        best = np.maximum.reduceat(scores, m.paragraph_starts)  # (G,): each document's best paragraph
        return _best(best, m.paragraph_docs, m.paragraph_docs, k, allowed)

    def lead_dense(
        self, collection: str, query: np.ndarray, k: int, where: Where | None = None
    ) -> list[tuple[int, float]]:
        """The k documents whose lead sentence is closest to `query`, as (document id, cosine)."""
        m, allowed = self._searched(collection, where)
        return _top_k(m.leads, m.lead_docs, m.lead_docs, query, k, allowed)

    def document_lexical(
        self, collection: str, text: str, k: int, where: Where | None = None
    ) -> list[tuple[int, float]]:
        """The k documents of best BM25 over their whole text, as (document id, -bm25)."""
        expression = match_expression(text)
        if expression is None:
            return []
        with self._lock:
            cid = self._collection_id(collection)
            allowed = self._allowed_documents(cid, where)
            sql, args = f"SELECT rowid, rank FROM docfts_{cid} WHERE docfts_{cid} MATCH ? ", [expression]
            if allowed is not None:
                sql += f"AND rowid IN ({','.join('?' * len(allowed))}) "
                args += [int(a) for a in allowed]
            rows = self._db.execute(sql + "ORDER BY rank LIMIT ?", [*args, k]).fetchall()
        return [(int(r[0]), -float(r[1])) for r in rows]

    def chunk_places(self, collection: str, chunk_ids: Sequence[int]) -> dict[int, tuple[int, int]]:
        """(document id, chunk number within the document) of each chunk id."""
        with self._lock:
            m = self._matrix(self._collection_id(collection))
        if not m.places and len(m.chunk_ids):
            pairs = zip(m.doc_ids.tolist(), m.chunk_numbers.tolist(), strict=True)
            m.places = dict(zip(m.chunk_ids.tolist(), pairs, strict=True))
        return {c: m.places[c] for c in chunk_ids if c in m.places}

    def best_chunks(self, collection: str, doc_ids: Sequence[int], query: np.ndarray) -> dict[int, tuple[int, float]]:
        """For each document id, its chunk closest to `query`: (chunk id, cosine)."""
        with self._lock:
            m = self._matrix(self._collection_id(collection))
        q = unit(query, m.vectors.shape[1])
        out = {}
        for did in doc_ids:
            rows = np.flatnonzero(m.doc_ids == did)
            if rows.size:
                scores = m.vectors[rows] @ q
                best = int(np.argmax(scores))
                out[did] = (int(m.chunk_ids[rows[best]]), float(scores[best]))
        return out

    def lexical(self, collection: str, text: str, k: int, where: Where | None = None) -> list[tuple[int, float]]:
        """The k chunks of best BM25 for the words of `text` (any of them), as (chunk id, -bm25)."""
        expression = match_expression(text)
        if expression is None:
            return []
        with self._lock:
            cid = self._collection_id(collection)
            allowed = self._allowed_documents(cid, where)
            sql = f"SELECT rowid, rank FROM fts_{cid} WHERE fts_{cid} MATCH ? "  # rank: bm25, lower is better
            args: list[Any] = [expression]
            if allowed is not None:
                sql += f"AND rowid IN (SELECT id FROM chunks WHERE document_id IN ({','.join('?' * len(allowed))})) "
                args += [int(a) for a in allowed]
            rows = self._db.execute(sql + "ORDER BY rank LIMIT ?", [*args, k]).fetchall()
        return [(int(r[0]), -float(r[1])) for r in rows]

    def chunks(self, ids: Sequence[int]) -> list[ChunkRecord]:
        """Chunk records for `ids`, in the order given."""
        if not ids:
            return []
        with self._lock:
            rows = self._db.execute(
                "SELECT k.id, d.source, k.idx, k.text, d.metadata FROM chunks k JOIN documents d "
                f"ON d.id = k.document_id WHERE k.id IN ({','.join('?' * len(ids))})",
                [int(i) for i in ids],
            ).fetchall()
        by_id = {r[0]: ChunkRecord(r[0], r[1], r[2], r[3], json.loads(r[4])) for r in rows}
        return [by_id[i] for i in ids if i in by_id]

    def _matrix(self, cid: int) -> _Matrix:
        version, dim = self._db.execute("SELECT version, dim FROM collections WHERE id = ?", (cid,)).fetchone()
        cached = self._matrices.get(cid)
        if cached is not None and cached.version == version:
            return cached
        rows = self._db.execute(
            "SELECT id, document_id, embedding, idx FROM chunks WHERE collection_id = ? ORDER BY id", (cid,)
        ).fetchall()
        vectors = np.frombuffer(b"".join(r[2] for r in rows), dtype=np.float32).reshape(len(rows), dim)
        # stored vectors are unit length already (the encoder normalises); renormalise anyway so
        # vectors from any source rank by cosine
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = vectors / np.maximum(norms, 1e-12)
        docs = self._db.execute(
            "SELECT id, embedding FROM documents WHERE collection_id = ? ORDER BY id", (cid,)
        ).fetchall()
        found = self._db.execute(
            "SELECT document_id, idx, embedding FROM passages WHERE collection_id = ? ORDER BY document_id, idx",
            (cid,),
        ).fetchall()
        passages = np.frombuffer(b"".join(r[2] for r in found), dtype=np.float32).reshape(len(found), dim)
        owners = np.fromiter((r[0] for r in found), dtype=np.int64, count=len(found))
        is_lead = np.fromiter((r[1] < 0 for r in found), dtype=bool, count=len(found))
        para_owners = owners[~is_lead]
        starts = np.flatnonzero(np.r_[True, para_owners[1:] != para_owners[:-1]]) if len(para_owners) else owners[:0]
        m = _Matrix(
            version,
            np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)),
            np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows)),
            vectors.astype(np.float32, copy=False),
            np.fromiter((r[0] for r in docs), dtype=np.int64, count=len(docs)),
            np.frombuffer(b"".join(r[1] for r in docs), dtype=np.float32).reshape(len(docs), dim),
            np.fromiter((r[3] for r in rows), dtype=np.int64, count=len(rows)),
            np.ascontiguousarray(passages[~is_lead]),
            starts,
            para_owners[starts],
            np.ascontiguousarray(passages[is_lead]),
            owners[is_lead],
        )
        self._matrices[cid] = m
        return m

    def _searched(self, collection: str, where: Where | None) -> tuple[_Matrix, np.ndarray | None]:
        """The collection's matrices and the ids of the documents `where` allows (None: all)."""
        with self._lock:
            cid = self._collection_id(collection)
            return self._matrix(cid), self._allowed_documents(cid, where)

    def _allowed_documents(self, cid: int, where: Where | None) -> np.ndarray | None:
        """Ids of the collection's documents whose metadata matches every `where` entry."""
        if not where:
            return None
        sql, args = "SELECT id FROM documents WHERE collection_id = ?", [cid]
        for key, values in where_items(where):
            sql += f" AND json_extract(metadata, '$.{key}') IN ({','.join('?' * len(values))})"
            args += values
        return np.array([r[0] for r in self._db.execute(sql, args)], dtype=np.int64)

    # ---- checks ---------------------------------------------------------------------------------
    def check_integrity(self) -> list[str]:
        """Problems found (empty when the store is consistent): SQLite's own check, the FTS index
        against the chunk table, half-written documents, orphan chunks, vectors of the wrong size."""
        problems: list[str] = []
        with self._lock:
            result = [r[0] for r in self._db.execute("PRAGMA integrity_check")]
            if result != ["ok"]:
                problems += [f"sqlite: {r}" for r in result]
            for cid, name in self._db.execute("SELECT id, name FROM collections").fetchall():
                try:  # rank 1: also compare the index with the chunk texts it was built from
                    self._db.execute(f"INSERT INTO fts_{cid}(fts_{cid}, rank) VALUES ('integrity-check', 1)")
                    self._db.execute(f"INSERT INTO docfts_{cid}(docfts_{cid}) VALUES ('integrity-check')")
                except sqlite3.DatabaseError as e:
                    problems.append(f"collection {name!r}: text index: {e}")
                (unindexed,) = self._db.execute(
                    f"SELECT count(*) FROM documents d WHERE d.collection_id = ? "
                    f"AND NOT EXISTS (SELECT 1 FROM docfts_{cid} f WHERE f.rowid = d.id)",
                    (cid,),
                ).fetchone()
                (stray,) = self._db.execute(
                    f"SELECT count(*) FROM docfts_{cid} f "
                    "WHERE NOT EXISTS (SELECT 1 FROM documents d WHERE d.id = f.rowid)"
                ).fetchone()
                if unindexed or stray:
                    problems.append(f"collection {name!r}: {unindexed} documents unindexed, {stray} stray index rows")
            for source, want, have in self._db.execute(
                "SELECT d.source, d.n_chunks, (SELECT count(*) FROM chunks k WHERE k.document_id = d.id) AS have "
                "FROM documents d WHERE have != d.n_chunks"
            ):
                problems.append(f"document {source!r}: {have} of its {want} chunks stored")
            for source, n in self._db.execute(
                "SELECT d.source, count(*) FROM chunks k JOIN documents d ON d.id = k.document_id "
                "GROUP BY k.document_id HAVING max(k.idx) != count(*) - 1 OR min(k.idx) != 0"
            ):
                problems.append(f"document {source!r}: chunk numbers of its {n} chunks are not 0..{n - 1}")
            (orphans,) = self._db.execute(
                "SELECT count(*) FROM chunks k WHERE NOT EXISTS (SELECT 1 FROM documents d WHERE d.id = k.document_id)"
            ).fetchone()
            if orphans:
                problems.append(f"{orphans} chunks belong to no document")
            (orphans,) = self._db.execute(
                "SELECT count(*) FROM passages p "
                "WHERE NOT EXISTS (SELECT 1 FROM documents d WHERE d.id = p.document_id)"
            ).fetchone()
            if orphans:
                problems.append(f"{orphans} passages belong to no document")
            for name, bad in self._db.execute(
                "SELECT c.name, count(*) FROM passages p JOIN collections c ON c.id = p.collection_id "
                "WHERE length(p.embedding) != 4 * c.dim GROUP BY c.id"
            ):
                problems.append(f"collection {name!r}: {bad} passage vectors of the wrong size")
            for name, bad in self._db.execute(
                "SELECT c.name, count(*) FROM chunks k JOIN collections c ON c.id = k.collection_id "
                "WHERE length(k.embedding) != 4 * c.dim GROUP BY c.id"
            ):
                problems.append(f"collection {name!r}: {bad} chunk vectors of the wrong size")
        return problems


def checked_vectors(source: str, chunks: Sequence[str], vectors: np.ndarray, dim: int) -> np.ndarray:
    """A document's chunk vectors as a contiguous float32 (len(chunks), dim) array; a wrong shape
    or no chunks raise errors that name the document."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape != (len(chunks), dim):
        raise EmbeddingMismatchError(
            f"{source}: expected {len(chunks)} vectors of width {dim}, got shape {vectors.shape}"
        )
    if not chunks:
        raise ValueError(f"{source}: a document needs at least one chunk")
    return vectors


def passage_rows(source: str, passages: Passages | None, dim: int) -> list[tuple[int, np.ndarray]]:
    """A document's passage vectors as (idx, unit float32 (dim,) vector) rows: the lead at idx -1,
    then the paragraphs from 0. A wrong shape raises an error that names the document."""
    if passages is None:
        return []
    lead = np.asarray(passages.lead, dtype=np.float32)
    paragraphs = np.asarray(passages.paragraphs, dtype=np.float32)
    if lead.shape != (dim,) or paragraphs.ndim != 2 or paragraphs.shape[1:] != (dim,) or not len(paragraphs):
        raise EmbeddingMismatchError(
            f"{source}: passages need a lead vector ({dim},) and paragraph vectors (P >= 1, {dim}), "
            f"got {lead.shape} and {paragraphs.shape}"
        )
    rows = np.concatenate([lead[None], paragraphs])  # (1 + P, dim)
    rows = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
    return [(i - 1, np.ascontiguousarray(r)) for i, r in enumerate(rows)]


def where_items(where: Where) -> list[tuple[str, list[Any]]]:
    """A metadata filter checked: (key, allowed values) pairs; a bad key or value raises ValueError."""
    items = []
    for key, value in where.items():
        if not _META_KEY.match(str(key)):
            raise ValueError(f"where: invalid metadata key {key!r}")
        values = value if isinstance(value, list) else [value]
        if not values or not all(isinstance(v, (str, int, float, bool)) for v in values):
            raise ValueError(f"where.{key}: expected a string, number or bool, or a list of them")
        items.append((str(key), values))
    return items


def query_words(text: str) -> list[str] | None:
    """The words a lexical query matches (any of them): common words are left out unless nothing
    else is left. None when `text` has no words."""
    words = list(dict.fromkeys(w.lower() for w in _WORD.findall(text)))
    kept = [w for w in words if w not in _STOPWORDS] or words
    return kept or None


def unit(query: np.ndarray, dim: int) -> np.ndarray:
    q = np.asarray(query, dtype=np.float32).reshape(-1)
    if q.shape[0] != dim:
        raise EmbeddingMismatchError(f"query vector has width {q.shape[0]}, the collection {dim}")
    return q / max(float(np.linalg.norm(q)), 1e-12)


def _top_k(
    vectors: np.ndarray, ids: np.ndarray, doc_ids: np.ndarray, query: np.ndarray, k: int, allowed: np.ndarray | None
) -> list[tuple[int, float]]:
    """Rows of `vectors` (N, D) of highest cosine with `query` (D,), among the allowed documents,
    as (id, cosine), best first. Exact: one matrix-vector product and a partial sort."""
    if vectors.shape[0] == 0:
        return []
    return _best(vectors @ unit(query, vectors.shape[1]), ids, doc_ids, k, allowed)  # scores (N,)


def _best(
    scores: np.ndarray, ids: np.ndarray, doc_ids: np.ndarray, k: int, allowed: np.ndarray | None
) -> list[tuple[int, float]]:
    """The k highest `scores` (N,) among the allowed documents, as (id, score), best first."""
    if allowed is not None:
        scores = np.where(np.isin(doc_ids, allowed), scores, -np.inf)
    k = min(k, int(np.isfinite(scores).sum()))
    if k <= 0:
        return []
    top = np.argpartition(-scores, k - 1)[:k]
    top = top[np.argsort(-scores[top], kind="stable")]
    return [(int(ids[i]), float(scores[i])) for i in top]


_WORD = re.compile(r"\w+", re.UNICODE)


def match_expression(text: str) -> str | None:
    """An FTS5 query matching any of the words of `text` (quoted, so no word acts as an operator);
    common words are left out unless nothing else is left. None when `text` has no words."""
    kept = query_words(text)
    return None if kept is None else " OR ".join(f'"{w}"' for w in kept)
