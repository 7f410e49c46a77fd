"""Ingest: files and folders (or in-memory texts) -> chunks -> embeddings -> one transaction each.

Documents are read and chunked a group at a time and the group's chunks and passages (each
paragraph and the lead sentence, which search ranks documents by too) embedded in one call (the
encoder batches by length; one document's few texts alone would waste it), then each document
is written in its own transaction. An unreadable file is reported and skipped;
the rest go on.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from brainwork.rag.chunking import Chunker
from brainwork.rag.errors import RagError, UnreadableDocumentError
from brainwork.rag.readers import DEFAULT_MAX_BYTES, SUFFIXES, check_size, extract_text, read_bytes
from brainwork.rag.store import Passages, VectorStore

log = logging.getLogger("brainwork.rag")

_GROUP_TEXTS = 128  # chunks and passages embedded per encoder call


class Embedder:
    """The embedding model as retrieval uses it: unit vectors (N, D) and token counts."""

    def __init__(self, model: str | None = None, runner: Any = None) -> None:
        from brainwork.catalog import DEFAULT_EMBEDDING_MODEL

        if runner is None:
            from brainwork.pipelines.embeddings import load_encoder

            runner = load_encoder(model)
        self.runner = runner
        self.name = model or DEFAULT_EMBEDDING_MODEL
        self.dim = runner.config.hidden_size * len(runner.pooling_modes or ("mean",))
        self.max_tokens = runner.max_length - 2  # [CLS] and [SEP] take two of the window

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.runner.embed(texts, normalize=True, truncation=True).float().numpy()  # (N, D)

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [n - 2 for n in self.runner.token_lengths(texts)]

    def chunker(self, max_tokens: int = 200, overlap: int = 40) -> Chunker:
        return Chunker(self.count_tokens, min(max_tokens, self.max_tokens), overlap)


@dataclass
class Item:
    """One document to ingest: its source (a path or an id), text and metadata."""

    source: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    content_hash: str = ""


@dataclass
class IngestReport:
    added: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (source, why)
    chunks: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "replaced": self.replaced,
            "unchanged": self.unchanged,
            "skipped": [{"source": s, "error": why} for s, why in self.skipped],
            "chunks": self.chunks,
        }


def iter_files(paths: Sequence[str | Path]) -> Iterator[Path]:
    """Named files as given; folders walked for the readable kinds (text, Markdown, HTML, PDF)."""
    for p in map(Path, paths):
        if p.is_dir():
            yield from sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in SUFFIXES)
        else:
            yield p


def content_hash(data: bytes, chunker: Chunker, metadata: dict[str, Any] | None = None) -> str:
    h = hashlib.sha256(data)
    h.update(json.dumps(metadata or {}, sort_keys=True).encode())
    return f"sha256:{h.hexdigest()}:{chunker.signature}"


class Ingestor:
    def __init__(
        self,
        store: VectorStore,
        embedder: Embedder,
        collection: str,
        chunker: Chunker | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.store, self.embedder, self.collection = store, embedder, collection
        self.chunker = chunker or embedder.chunker()
        self.max_bytes = max_bytes
        store.create_collection(collection, embedder.name, embedder.dim)

    def add_files(
        self, paths: Sequence[str | Path], metadata: dict[str, Any] | None = None, progress: bool = True
    ) -> IngestReport:
        report = IngestReport()
        files = list(iter_files(paths))
        return self._run(self._file_items(files, metadata, report), report, len(files), progress)

    def add_texts(self, items: Iterable[Item], progress: bool = False) -> IngestReport:
        report = IngestReport()
        items = list(items)

        def checked() -> Iterator[Item]:
            for item in items:
                try:
                    if not item.source:
                        raise UnreadableDocumentError("a document needs a non-empty id")
                    data = item.text.encode("utf-8")
                    check_size(item.source, len(data), self.max_bytes)
                    if not item.text.strip():
                        raise UnreadableDocumentError(f"{item.source}: no text in it")
                    item.content_hash = content_hash(data, self.chunker, item.metadata)
                    if self.store.document_hash(self.collection, item.source) == item.content_hash:
                        report.unchanged.append(item.source)  # stored already: nothing to chunk or embed
                        yield Item(item.source, "", {}, "")
                        continue
                    yield item
                except RagError as e:
                    report.skipped.append((item.source, str(e)))

        return self._run(checked(), report, len(items), progress)

    def _file_items(self, files: list[Path], metadata: dict[str, Any] | None, report: IngestReport) -> Iterator[Item]:
        for path in files:
            source = str(path.resolve())
            try:
                data = read_bytes(path, self.max_bytes)
                digest = content_hash(data, self.chunker, metadata)
                if self.store.document_hash(self.collection, source) == digest:
                    report.unchanged.append(source)
                    yield Item(source, "", {}, "")  # counted by the progress bar, not written
                    continue
                yield Item(source, extract_text(str(path), data), dict(metadata or {}), digest)
            except RagError as e:
                log.info("skipped %s", e)
                report.skipped.append((source, str(e)))
                yield Item(source, "", {}, "")

    def _run(self, items: Iterator[Item], report: IngestReport, total: int, progress: bool) -> IngestReport:
        group: list[tuple[Item, list[str], list[str]]] = []  # (item, chunks, [lead, *paragraphs])
        pending = 0
        with tqdm(total=total, desc="ingesting", unit="doc", disable=not progress) as bar:
            for item in items:
                if not item.content_hash:  # unchanged or skipped: already reported
                    bar.update(1)
                    continue
                pieces, lead, paragraphs = self.chunker.split_all(item.text)
                group.append((item, pieces, [lead, *paragraphs] if paragraphs else []))
                pending += len(pieces) + len(paragraphs) + 1
                if pending >= _GROUP_TEXTS:
                    self._write(group, report, bar)
                    group, pending = [], 0
            if group:
                self._write(group, report, bar)
        return report

    def _write(self, group: list[tuple[Item, list[str], list[str]]], report: IngestReport, bar: Any) -> None:
        texts = [text for _, pieces, passages in group for text in pieces + passages]
        vectors = self.embedder.embed(texts)  # (sum of chunks and passages, D)
        start = 0
        for item, pieces, passages in group:
            rows = vectors[start : start + len(pieces)]
            more = vectors[start + len(pieces) : start + len(pieces) + len(passages)]  # lead, paragraphs
            start += len(pieces) + len(passages)
            outcome = self.store.put_document(
                self.collection,
                item.source,
                item.content_hash,
                pieces,
                rows,
                item.metadata,
                Passages(more[0], more[1:]) if len(more) else None,
            )
            {"added": report.added, "replaced": report.replaced, "unchanged": report.unchanged}[outcome].append(
                item.source
            )
            if outcome != "unchanged":
                report.chunks += len(pieces)
            bar.update(1)
            bar.set_postfix(chunks=report.chunks, refresh=False)
