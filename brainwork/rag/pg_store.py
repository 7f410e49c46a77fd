"""`PgVectorStore`: the `VectorStore` interface on PostgreSQL with the pgvector extension.

For a store that outgrows one SQLite file or must be shared by several servers: `--store
postgresql://user@host/db` on every `brainwork rag`/`rec`/`serve` command. The same data model as
`SQLiteStore` in four tables prefixed `bw_` (so they can live in an existing database):
collections, documents (with their mean vector and a text-search vector of the whole text), chunks
(text, a `vector` column, a text-search vector) and passages (the vectors of each paragraph and of
the lead sentence). Each document is written in one transaction.

Search is exact, like the SQLite store: `ORDER BY embedding <=> query` (cosine distance) scans the
collection's rows (no approximate index: top-k equals a full sort). Lexical ranking is
PostgreSQL's full-text search (English stemming) with each word's rank weighted by its inverse
document frequency, close to the BM25 that SQLite's FTS5 computes, so hybrid rankings differ a
little between the two stores; dense results are the same.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from brainwork.rag.errors import EmbeddingMismatchError, UnknownCollectionError, UnknownItemError
from brainwork.rag.store import (
    _NAME,
    ChunkRecord,
    CollectionInfo,
    DocumentInfo,
    Passages,
    Where,
    checked_vectors,
    passage_rows,
    query_words,
    unit,
    where_items,
)

_SCHEMA = """
CREATE EXTENSION IF NOT EXISTS vector;
CREATE TABLE IF NOT EXISTS bw_collections (
    id serial PRIMARY KEY, name text NOT NULL UNIQUE, model text NOT NULL, dim integer NOT NULL,
    created double precision NOT NULL
);
CREATE TABLE IF NOT EXISTS bw_documents (
    id bigserial PRIMARY KEY,
    collection_id integer NOT NULL REFERENCES bw_collections(id) ON DELETE CASCADE,
    source text NOT NULL, hash text NOT NULL, metadata jsonb NOT NULL DEFAULT '{}',
    n_chunks integer NOT NULL, embedding vector NOT NULL, tsv tsvector NOT NULL,
    added double precision NOT NULL, UNIQUE (collection_id, source)
);
CREATE TABLE IF NOT EXISTS bw_chunks (
    id bigserial PRIMARY KEY,
    document_id bigint NOT NULL REFERENCES bw_documents(id) ON DELETE CASCADE,
    collection_id integer NOT NULL, idx integer NOT NULL, text text NOT NULL,
    embedding vector NOT NULL, tsv tsvector NOT NULL
);
-- idx -1: the lead sentence; 0, 1, ...: the paragraphs (as in the SQLite store)
CREATE TABLE IF NOT EXISTS bw_passages (
    document_id bigint NOT NULL REFERENCES bw_documents(id) ON DELETE CASCADE,
    collection_id integer NOT NULL, idx integer NOT NULL, embedding vector NOT NULL
);
CREATE INDEX IF NOT EXISTS bw_passages_by_document ON bw_passages(document_id);
CREATE INDEX IF NOT EXISTS bw_passages_by_collection ON bw_passages(collection_id);
CREATE INDEX IF NOT EXISTS bw_chunks_by_document ON bw_chunks(document_id);
CREATE INDEX IF NOT EXISTS bw_chunks_by_collection ON bw_chunks(collection_id);
CREATE INDEX IF NOT EXISTS bw_chunks_text ON bw_chunks USING gin(tsv);
CREATE INDEX IF NOT EXISTS bw_documents_text ON bw_documents USING gin(tsv);
"""


def _vec(v: np.ndarray) -> str:
    """pgvector's text form of a vector: '[x0,x1,...]' (float32 round-trips through repr)."""
    return "[" + ",".join(repr(float(x)) for x in np.asarray(v, dtype=np.float32)) + "]"


class PgVectorStore:
    """Collections in a PostgreSQL database. Safe to share between threads (one lock serialises calls)."""

    def __init__(self, dsn: str) -> None:
        try:
            import psycopg
        except ImportError as e:  # an optional dependency: only this store needs it
            raise ImportError("a PostgreSQL store needs psycopg: pip install 'brainwork[postgres]'") from e
        self.dsn = dsn
        self.path = _redact(dsn)  # how errors name the store (no password)
        self._db = psycopg.connect(dsn, autocommit=True)
        self._lock = threading.RLock()
        with self._tx():
            self._db.execute(_SCHEMA)

    def __enter__(self) -> PgVectorStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[None]:
        with self._lock, self._db.transaction():
            yield

    def _rows(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # ---- collections --------------------------------------------------------------------------
    def create_collection(self, name: str, model: str, dim: int) -> CollectionInfo:
        """The collection `name`, created if new; an existing one must use the same model."""
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"collection: invalid name {name!r} (letters, digits, '_', '.', '-'; up to 64)")
        with self._tx():
            self._db.execute(
                "INSERT INTO bw_collections(name, model, dim, created) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (name) DO NOTHING",
                (name, model, dim, time.time()),
            )
            row = self._db.execute("SELECT model, dim FROM bw_collections WHERE name = %s", (name,)).fetchone()
        if row is not None and (row[0], row[1]) != (model, dim):
            raise EmbeddingMismatchError(
                f"collection {name!r} holds {row[1]}-dimensional vectors from {row[0]!r}, not {dim} from {model!r}"
            )
        return self.collection(name)

    def collection(self, name: str) -> CollectionInfo:
        rows = self._rows(
            "SELECT c.name, c.model, c.dim, (SELECT count(*) FROM bw_documents d WHERE d.collection_id = c.id), "
            "(SELECT count(*) FROM bw_chunks k WHERE k.collection_id = c.id) FROM bw_collections c WHERE c.name = %s",
            (name,),
        )
        if not rows:
            raise self._unknown(name)
        return CollectionInfo(*rows[0])

    def collections(self) -> list[CollectionInfo]:
        return [self.collection(r[0]) for r in self._rows("SELECT name FROM bw_collections ORDER BY name")]

    def drop_collection(self, name: str) -> None:
        with self._tx():
            cid = self._collection_id(name)
            self._db.execute("DELETE FROM bw_chunks WHERE collection_id = %s", (cid,))
            self._db.execute("DELETE FROM bw_passages WHERE collection_id = %s", (cid,))
            self._db.execute("DELETE FROM bw_collections WHERE id = %s", (cid,))  # documents cascade

    def _collection_id(self, name: str) -> int:
        rows = self._rows("SELECT id FROM bw_collections WHERE name = %s", (name,))
        if not rows:
            raise self._unknown(name)
        return int(rows[0][0])

    def _dim(self, cid: int) -> int:
        return int(self._rows("SELECT dim FROM bw_collections WHERE id = %s", (cid,))[0][0])

    def _unknown(self, name: str) -> UnknownCollectionError:
        known = [r[0] for r in self._rows("SELECT name FROM bw_collections ORDER BY name")]
        listed = ", ".join(map(repr, known)) if known else "none yet"
        return UnknownCollectionError(f"collection {name!r} does not exist in {self.path} (collections: {listed})")

    # ---- documents ------------------------------------------------------------------------------
    def document_hash(self, collection: str, source: str) -> str | None:
        cid = self._collection_id(collection)
        rows = self._rows("SELECT hash FROM bw_documents WHERE collection_id = %s AND source = %s", (cid, source))
        return rows[0][0] if rows else None

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
        dim = self.collection(collection).dim
        vectors = checked_vectors(source, chunks, vectors, dim)
        rows = passage_rows(source, passages, dim)
        if any("\x00" in text for text in chunks):  # PostgreSQL text cannot hold NUL
            raise ValueError(f"{source}: text contains a NUL character")
        # unit rows, so that cosine distance ranks them as the SQLite store's dot products do
        vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        mean = vectors.mean(axis=0)
        mean /= max(float(np.linalg.norm(mean)), 1e-12)
        meta = json.dumps(metadata or {}, ensure_ascii=False, sort_keys=True)
        with self._tx():
            cid = self._collection_id(collection)
            old = self._db.execute(
                "SELECT id, hash FROM bw_documents WHERE collection_id = %s AND source = %s FOR UPDATE", (cid, source)
            ).fetchone()
            if old is not None and old[1] == content_hash:
                return "unchanged"
            if old is not None:
                self._db.execute("DELETE FROM bw_documents WHERE id = %s", (old[0],))  # chunks cascade
            (did,) = self._db.execute(
                "INSERT INTO bw_documents(collection_id, source, hash, metadata, n_chunks, embedding, tsv, added) "
                "VALUES (%s, %s, %s, %s::jsonb, %s, %s::vector, to_tsvector('english', %s), %s) RETURNING id",
                (cid, source, content_hash, meta, len(chunks), _vec(mean), "\n\n".join(chunks), time.time()),
            ).fetchone()
            with self._db.cursor() as cur:
                cur.executemany(
                    "INSERT INTO bw_chunks(document_id, collection_id, idx, text, embedding, tsv) "
                    "VALUES (%s, %s, %s, %s, %s::vector, to_tsvector('english', %s))",
                    [(did, cid, i, text, _vec(vectors[i]), text) for i, text in enumerate(chunks)],
                )
                if rows:
                    cur.executemany(
                        "INSERT INTO bw_passages(document_id, collection_id, idx, embedding) "
                        "VALUES (%s, %s, %s, %s::vector)",
                        [(did, cid, i, _vec(v)) for i, v in rows],
                    )
        return "added" if old is None else "replaced"

    def delete_document(self, collection: str, source: str) -> bool:
        with self._tx():
            cid = self._collection_id(collection)
            cur = self._db.execute("DELETE FROM bw_documents WHERE collection_id = %s AND source = %s", (cid, source))
            return cur.rowcount > 0

    def documents(self, collection: str) -> list[DocumentInfo]:
        cid = self._collection_id(collection)
        rows = self._rows(
            "SELECT source, hash, n_chunks, metadata, added FROM bw_documents WHERE collection_id = %s ORDER BY id",
            (cid,),
        )
        return [DocumentInfo(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    def document_vectors(self, collection: str) -> tuple[list[str], np.ndarray]:
        """Every document's source and its mean chunk vector, unit length: (N,), (N, D)."""
        cid = self._collection_id(collection)
        rows = self._rows(
            "SELECT source, embedding::real[] FROM bw_documents WHERE collection_id = %s ORDER BY id", (cid,)
        )
        if not rows:
            return [], np.zeros((0, self._dim(cid)), dtype=np.float32)
        return [r[0] for r in rows], np.array([r[1] for r in rows], dtype=np.float32)

    def document_metadata(self, collection: str, sources: Sequence[str]) -> dict[str, dict[str, Any]]:
        cid = self._collection_id(collection)
        found = dict(
            self._rows(
                "SELECT source, metadata FROM bw_documents WHERE collection_id = %s AND source = ANY(%s)",
                (cid, list(sources)),
            )
        )
        for source in sources:
            if source not in found:
                raise UnknownItemError(f"item {source!r} is not in collection {collection!r}")
        return {s: found[s] for s in sources}

    # ---- search ---------------------------------------------------------------------------------
    def _filter(self, where: Where | None, column: str) -> tuple[str, list[Any]]:
        """SQL (starting with AND) keeping rows whose document's metadata matches every `where` entry."""
        if not where:
            return "", []
        sql, args = "", []
        for key, values in where_items(where):
            sql += f" AND (SELECT metadata -> %s FROM bw_documents f WHERE f.id = {column}) = ANY(%s::jsonb[])"
            args += [key, [json.dumps(v) for v in values]]
        return sql, args

    def dense(self, collection: str, query: np.ndarray, k: int, where: Where | None = None) -> list[tuple[int, float]]:
        """The k chunks of highest cosine with `query` (D,), as (chunk id, cosine), best first."""
        return self._nearest("bw_chunks k", "k.document_id", collection, query, k, where)

    def document_dense(
        self, collection: str, query: np.ndarray, k: int, where: Where | None = None
    ) -> list[tuple[int, float]]:
        """The k documents whose mean chunk vector is closest to `query`, as (document id, cosine)."""
        return self._nearest("bw_documents k", "k.id", collection, query, k, where)

    def paragraph_dense(
        self, collection: str, query: np.ndarray, k: int, where: Where | None = None
    ) -> list[tuple[int, float]]:
        """The k documents whose best paragraph is closest to `query`, as (document id, cosine)."""
        return self._passages("k.idx >= 0", collection, query, k, where)

    def lead_dense(
        self, collection: str, query: np.ndarray, k: int, where: Where | None = None
    ) -> list[tuple[int, float]]:
        """The k documents whose lead sentence is closest to `query`, as (document id, cosine)."""
        return self._passages("k.idx = -1", collection, query, k, where)

    def _passages(
        self, kind: str, collection: str, query: np.ndarray, k: int, where: Where | None
    ) -> list[tuple[int, float]]:
        cid = self._collection_id(collection)
        q = _vec(unit(query, self._dim(cid)))
        sql, args = self._filter(where, "k.document_id")
        rows = self._rows(
            "SELECT k.document_id, max(1 - (k.embedding <=> %s::vector)) AS s FROM bw_passages k "
            f"WHERE k.collection_id = %s AND {kind}{sql} GROUP BY k.document_id ORDER BY s DESC, k.document_id "
            "LIMIT %s",
            [q, cid, *args, k],
        )
        return [(int(r[0]), float(r[1])) for r in rows]

    def _nearest(
        self, table: str, doc: str, collection: str, query: np.ndarray, k: int, where: Where | None
    ) -> list[tuple[int, float]]:
        cid = self._collection_id(collection)
        q = _vec(unit(query, self._dim(cid)))
        sql, args = self._filter(where, doc)
        rows = self._rows(
            f"SELECT k.id, 1 - (k.embedding <=> %s::vector) FROM {table} WHERE k.collection_id = %s{sql} "
            "ORDER BY k.embedding <=> %s::vector, k.id LIMIT %s",
            [q, cid, *args, q, k],
        )
        return [(int(r[0]), float(r[1])) for r in rows]

    def lexical(self, collection: str, text: str, k: int, where: Where | None = None) -> list[tuple[int, float]]:
        """The k chunks of best full-text rank for the words of `text` (any of them), as (chunk id, rank)."""
        return self._text_rank("bw_chunks k", "k.id", "k.document_id", collection, text, k, where)

    def document_lexical(
        self, collection: str, text: str, k: int, where: Where | None = None
    ) -> list[tuple[int, float]]:
        """The k documents of best full-text rank over their whole text, as (document id, rank)."""
        return self._text_rank("bw_documents k", "k.id", "k.id", collection, text, k, where)

    def _text_rank(
        self, table: str, key: str, doc: str, collection: str, text: str, k: int, where: Where | None
    ) -> list[tuple[int, float]]:
        """BM25-like ranking in SQL: each query word's `ts_rank` (term frequency, normalised by
        the log of the row's length) weighted by its inverse document frequency among the
        collection's rows. PostgreSQL's own ranking has no IDF, and for a headline's words OR'ed
        together that matters most (measured on the BBC corpus: plain `ts_rank_cd` fused to 0.920
        of headlines found, this 0.958 (SQLite with BM25: 0.956))."""
        words = query_words(text)
        if words is None:
            return []
        cid = self._collection_id(collection)
        ((total,),) = self._rows(f"SELECT count(*) FROM {table} WHERE k.collection_id = %s", (cid,))
        # the words' lexemes (stemmed, stop words dropped) and how many rows hold each
        terms = []
        for word in words:
            rows = self._rows(
                f"SELECT q::text, (SELECT count(*) FROM {table} WHERE k.collection_id = %s AND k.tsv @@ q) "
                "FROM plainto_tsquery('english', %s) q WHERE q::text <> ''",
                (cid, word),
            )
            if rows and rows[0][1]:
                df = rows[0][1]
                terms.append((rows[0][0], math.log(1 + (total - df + 0.5) / (df + 0.5))))
        if not terms:
            return []
        values = ", ".join(["(%s::tsquery, %s::float8)"] * len(terms))
        sql, args = self._filter(where, doc)
        rows = self._rows(
            f"WITH terms(q, idf) AS (VALUES {values}) "
            f"SELECT {key}, sum(t.idf * ts_rank(k.tsv, t.q, 1)) AS r FROM {table} JOIN terms t ON k.tsv @@ t.q "
            f"WHERE k.collection_id = %s{sql} GROUP BY {key} ORDER BY r DESC, {key} LIMIT %s",
            [*(x for term in terms for x in term), cid, *args, k],
        )
        return [(int(r[0]), float(r[1])) for r in rows]

    def chunk_places(self, collection: str, chunk_ids: Sequence[int]) -> dict[int, tuple[int, int]]:
        """(document id, chunk number within the document) of each chunk id."""
        cid = self._collection_id(collection)
        rows = self._rows(
            "SELECT id, document_id, idx FROM bw_chunks WHERE collection_id = %s AND id = ANY(%s)",
            (cid, [int(c) for c in chunk_ids]),
        )
        return {int(r[0]): (int(r[1]), int(r[2])) for r in rows}

    def best_chunks(self, collection: str, doc_ids: Sequence[int], query: np.ndarray) -> dict[int, tuple[int, float]]:
        """For each document id, its chunk closest to `query`: (chunk id, cosine)."""
        cid = self._collection_id(collection)
        q = _vec(unit(query, self._dim(cid)))
        rows = self._rows(
            "SELECT DISTINCT ON (document_id) document_id, id, 1 - (embedding <=> %s::vector) FROM bw_chunks "
            "WHERE collection_id = %s AND document_id = ANY(%s) ORDER BY document_id, embedding <=> %s::vector, id",
            (q, cid, [int(d) for d in doc_ids], q),
        )
        return {int(r[0]): (int(r[1]), float(r[2])) for r in rows}

    def chunks(self, ids: Sequence[int]) -> list[ChunkRecord]:
        """Chunk records for `ids`, in the order given."""
        if not ids:
            return []
        rows = self._rows(
            "SELECT k.id, d.source, k.idx, k.text, d.metadata FROM bw_chunks k "
            "JOIN bw_documents d ON d.id = k.document_id WHERE k.id = ANY(%s)",
            ([int(i) for i in ids],),
        )
        by_id = {r[0]: ChunkRecord(r[0], r[1], r[2], r[3], r[4]) for r in rows}
        return [by_id[i] for i in ids if i in by_id]

    # ---- checks ---------------------------------------------------------------------------------
    def check_integrity(self) -> list[str]:
        """Problems found (empty when the store is consistent): half-written documents, chunk
        numbers with gaps, chunks of no document, vectors of the wrong size."""
        problems: list[str] = []
        for source, want, have in self._rows(
            "SELECT d.source, d.n_chunks, (SELECT count(*) FROM bw_chunks k WHERE k.document_id = d.id) "
            "FROM bw_documents d WHERE d.n_chunks != (SELECT count(*) FROM bw_chunks k WHERE k.document_id = d.id)"
        ):
            problems.append(f"document {source!r}: {have} of its {want} chunks stored")
        for source, n in self._rows(
            "SELECT d.source, count(*) FROM bw_chunks k JOIN bw_documents d ON d.id = k.document_id "
            "GROUP BY d.id, d.source HAVING max(k.idx) != count(*) - 1 OR min(k.idx) != 0"
        ):
            problems.append(f"document {source!r}: chunk numbers of its {n} chunks are not 0..{n - 1}")
        ((orphans,),) = self._rows(
            "SELECT count(*) FROM bw_chunks k "
            "WHERE NOT EXISTS (SELECT 1 FROM bw_documents d WHERE d.id = k.document_id)"
        )
        if orphans:
            problems.append(f"{orphans} chunks belong to no document")
        for name, bad in self._rows(
            "SELECT c.name, count(*) FROM bw_passages k JOIN bw_collections c ON c.id = k.collection_id "
            "WHERE vector_dims(k.embedding) != c.dim GROUP BY c.name"
        ):
            problems.append(f"collection {name!r}: {bad} passage vectors of the wrong size")
        for name, bad in self._rows(
            "SELECT c.name, count(*) FROM bw_chunks k JOIN bw_collections c ON c.id = k.collection_id "
            "WHERE vector_dims(k.embedding) != c.dim GROUP BY c.name"
        ):
            problems.append(f"collection {name!r}: {bad} chunk vectors of the wrong size")
        return problems


def _redact(dsn: str) -> str:
    """The DSN without its password, for messages."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", dsn)


def is_postgres(spec: object) -> bool:
    return isinstance(spec, str) and spec.startswith(("postgresql://", "postgres://"))
