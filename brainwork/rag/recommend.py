"""Recommendations over a catalog of items (a collection whose documents are the items).

An item's vector is the mean of its chunk vectors (unit length). A user's profile is the mean of
the liked items' vectors minus `dislike_weight` times the mean of the disliked ones; items are
ranked by cosine with it, leaving out what the user has liked, disliked or seen. Maximal marginal
relevance (MMR) trades relevance for variety: each next pick maximises
    (1 - diversity) * cosine(profile, item) - diversity * max cosine(item, already picked).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from brainwork.rag.errors import UnknownItemError
from brainwork.rag.ingest import Embedder, Ingestor, IngestReport, Item
from brainwork.rag.store import VectorStore, Where


@dataclass(frozen=True)
class Recommendation:
    id: str
    score: float  # cosine with the profile (or the seed item)
    metadata: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "score": self.score, "metadata": self.metadata}


def as_item(obj: Item | dict[str, Any]) -> Item:
    if isinstance(obj, Item):
        return obj
    if not isinstance(obj, dict) or "id" not in obj or "text" not in obj:
        raise ValueError(f"items: each item needs 'id' and 'text', got {obj!r:.80}")
    if not isinstance(obj["text"], str):
        raise ValueError(f"items: {obj['id']!r}: 'text' must be a string")
    return Item(str(obj["id"]), obj["text"], dict(obj.get("metadata") or {}))


class Recommender:
    def __init__(self, store: VectorStore, embedder: Embedder, collection: str, dislike_weight: float = 0.5) -> None:
        self.store, self.embedder, self.collection = store, embedder, collection
        self.dislike_weight = dislike_weight

    def add(self, items: Iterable[Item | dict[str, Any]], progress: bool = False) -> IngestReport:
        """Add or update catalog items (`{"id", "text", "metadata"}`); unchanged ones are no-ops."""
        ingestor = Ingestor(self.store, self.embedder, self.collection)
        return ingestor.add_texts([as_item(i) for i in items], progress=progress)

    def similar(
        self, item_id: str, k: int = 10, diversity: float = 0.0, where: Where | None = None
    ) -> list[Recommendation]:
        return self.recommend([item_id], k=k, diversity=diversity, where=where)

    def recommend(
        self,
        liked: Sequence[str] = (),
        disliked: Sequence[str] = (),
        k: int = 10,
        diversity: float = 0.0,
        seen: Sequence[str] = (),
        where: Where | None = None,
    ) -> list[Recommendation]:
        if not liked and not disliked:
            raise ValueError("liked: give at least one liked or disliked item id")
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be an integer >= 1, got {k!r}")
        if not 0.0 <= diversity <= 1.0:
            raise ValueError(f"diversity must be in [0, 1], got {diversity!r}")
        ids, vectors = self.store.document_vectors(self.collection)  # (N,), (N, D)
        index = {s: i for i, s in enumerate(ids)}
        missing = [s for s in (*liked, *disliked) if s not in index]
        if missing:
            raise UnknownItemError(f"items not in collection {self.collection!r}: {', '.join(map(repr, missing[:10]))}")
        profile = np.zeros(vectors.shape[1], dtype=np.float32)
        if liked:
            profile += vectors[[index[s] for s in liked]].mean(axis=0)
        if disliked:
            profile -= self.dislike_weight * vectors[[index[s] for s in disliked]].mean(axis=0)
        profile /= max(float(np.linalg.norm(profile)), 1e-12)
        scores = vectors @ profile  # (N,)
        excluded = {index[s] for s in (*liked, *disliked, *seen) if s in index}
        allowed = np.ones(len(ids), dtype=bool)
        allowed[list(excluded)] = False
        if where:
            keep = set(self._matching(where))
            allowed &= np.array([s in keep for s in ids], dtype=bool)
        candidates = np.flatnonzero(allowed)
        if candidates.size == 0:
            return []
        # MMR only ever picks among the most relevant few; rank a pool of them, not all N
        pool = candidates[np.argsort(-scores[candidates], kind="stable")[: max(10 * k, 50)]]
        picks = mmr(scores[pool], vectors[pool], k, diversity)
        chosen = [ids[pool[i]] for i in picks]
        meta = self.store.document_metadata(self.collection, chosen)
        return [Recommendation(ids[pool[i]], float(scores[pool[i]]), meta[ids[pool[i]]]) for i in picks]

    def _matching(self, where: Where) -> list[str]:
        return [
            d.source
            for d in self.store.documents(self.collection)
            if all(d.metadata.get(key) in (v if isinstance(v, list) else [v]) for key, v in where.items())
        ]


def mmr(relevance: np.ndarray, vectors: np.ndarray, k: int, diversity: float) -> list[int]:
    """Indices of `k` picks from `relevance` (P,) and unit `vectors` (P, D) by maximal marginal relevance."""
    k = min(k, len(relevance))
    if diversity == 0.0:
        return [int(i) for i in np.argsort(-relevance, kind="stable")[:k]]
    picked: list[int] = []
    closest = np.full(len(relevance), -np.inf, dtype=np.float32)  # max cosine to any pick so far
    available = np.ones(len(relevance), dtype=bool)
    for _ in range(k):
        redundancy = np.where(np.isfinite(closest), closest, 0.0)
        value = (1.0 - diversity) * relevance - diversity * redundancy
        value[~available] = -np.inf
        best = int(np.argmax(value))
        picked.append(best)
        available[best] = False
        closest = np.maximum(closest, vectors @ vectors[best])
    return picked
