"""`recommendation`: a catalog of items, similar items, and recommendations from likes and dislikes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from brainwork.rag.ingest import Embedder, IngestReport, Item
from brainwork.rag.recommend import Recommendation, Recommender
from brainwork.rag.store import VectorStore, Where
from brainwork.rag.stores import open_store

DEFAULT_CATALOG = "items"


class RecommendationPipeline:
    """`pipeline("recommendation", model=EMBEDDING_MODEL, store=PATH, collection=NAME)`."""

    def __init__(
        self,
        model: str | None = None,
        *,
        store: str | Path | VectorStore | None = None,
        collection: str = DEFAULT_CATALOG,
        embedder: Embedder | None = None,
        diversity: float = 0.0,
    ) -> None:
        self.store: VectorStore = (
            store if store is not None and not isinstance(store, (str, Path)) else open_store(store)
        )
        self.embedder = embedder or Embedder(model)
        self.recommender = Recommender(self.store, self.embedder, collection)
        self.diversity = diversity

    def add(self, items: Iterable[Item | dict[str, Any]], progress: bool = False) -> IngestReport:
        return self.recommender.add(items, progress)

    def similar(
        self, item_id: str, k: int = 10, diversity: float | None = None, where: Where | None = None
    ) -> list[Recommendation]:
        return self.recommender.similar(item_id, k, self.diversity if diversity is None else diversity, where)

    def recommend(
        self,
        liked: Sequence[str] = (),
        disliked: Sequence[str] = (),
        k: int = 10,
        diversity: float | None = None,
        seen: Sequence[str] = (),
        where: Where | None = None,
    ) -> list[Recommendation]:
        d = self.diversity if diversity is None else diversity
        return self.recommender.recommend(liked, disliked, k, d, seen, where)

    def __call__(
        self, liked: Sequence[str] = (), disliked: Sequence[str] = (), k: int = 10, **kw: Any
    ) -> list[dict[str, Any]]:
        return [r.as_dict() for r in self.recommend(liked, disliked, k, **kw)]
