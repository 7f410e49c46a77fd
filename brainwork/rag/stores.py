"""Opening the store a `--store` value names: a `postgresql://` URL is a PostgreSQL database with
pgvector (`PgVectorStore`), anything else a SQLite file (`SQLiteStore`, the default path when None)."""

from __future__ import annotations

from pathlib import Path

from brainwork.rag.pg_store import PgVectorStore, is_postgres
from brainwork.rag.store import SQLiteStore, VectorStore

STORE_HELP = (
    "the store: a SQLite file, or a postgresql://user@host/db URL for PostgreSQL with pgvector "
    "(default: $BRAINWORK_STORE or ~/.local/share/brainwork/store.sqlite)"
)


def open_store(spec: str | Path | None) -> VectorStore:
    if is_postgres(spec):
        return PgVectorStore(str(spec))
    return SQLiteStore(spec)
