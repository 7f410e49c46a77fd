"""`rerank` (documents ordered by relevance to a query) and `sentence-similarity` (the Hugging
Face Inference task: one source sentence against a list)."""

from __future__ import annotations

from typing import Any

from brainwork.catalog import DEFAULT_EMBEDDING_MODEL
from brainwork.pipelines.embeddings import load_encoder
from brainwork.pipelines.inputs import as_text_list
from brainwork.pipelines.pair_scoring import PairScorer


def _query(query: Any, field: str) -> str:
    if not isinstance(query, str):
        raise ValueError(f"{field}: expected a string, got {type(query).__name__}")
    if not query.strip():
        raise ValueError(f"{field}: empty string")
    return query


class RerankPipeline:
    """`rerank(query, documents, top_n=None)` -> `[{"index", "score", "document"}]`, best first.

    The model is a cross-encoder checkpoint when given, else a sentence-embedding model
    (default `all-minilm-l6-v2`, scores are cosines)."""

    def __init__(self, model: str | None = None, **kwargs: Any) -> None:
        self.scorer = PairScorer(load_encoder(model or DEFAULT_EMBEDDING_MODEL, **kwargs))

    def __call__(
        self,
        query: str,
        documents: list[str],
        *,
        top_n: int | None = None,
        return_documents: bool = True,
        truncation: bool | None = None,
    ) -> list[dict[str, Any]]:
        query = _query(query, "query")
        docs, _ = as_text_list(documents, "documents")
        if top_n is not None and (not isinstance(top_n, int) or isinstance(top_n, bool) or top_n < 1):
            raise ValueError(f"top_n: expected None or an integer >= 1, got {top_n!r}")
        scores = self.scorer.score([(query, d) for d in docs], truncation).tolist()
        order = sorted(range(len(docs)), key=lambda i: -scores[i])[: top_n or len(docs)]
        out = []
        for i in order:
            item: dict[str, Any] = {"index": i, "score": scores[i]}
            if return_documents:
                item["document"] = docs[i]
            out.append(item)
        return out


class SentenceSimilarityPipeline:
    """`similarity(source_sentence, sentences)` -> one score per sentence, in input order; also
    takes the Inference API's `{"source_sentence": ..., "sentences": [...]}`."""

    def __init__(self, model: str | None = None, **kwargs: Any) -> None:
        self.scorer = PairScorer(load_encoder(model or DEFAULT_EMBEDDING_MODEL, **kwargs))

    def __call__(
        self, source_sentence: str | dict[str, Any], sentences: list[str] | None = None, **kwargs: Any
    ) -> list[float]:
        if isinstance(source_sentence, dict):
            unknown = set(source_sentence) - {"source_sentence", "sentences"}
            if unknown or sentences is not None:
                raise ValueError(
                    f"inputs: expected {{'source_sentence', 'sentences'}}, got keys {sorted(source_sentence)}"
                )
            source_sentence, sentences = source_sentence.get("source_sentence"), source_sentence.get("sentences")
        source = _query(source_sentence, "source_sentence")
        if sentences is None:
            raise ValueError("sentences: required (the sentences to compare with source_sentence)")
        texts, _ = as_text_list(sentences, "sentences")
        return self.scorer.score([(source, t) for t in texts], **kwargs).tolist()
