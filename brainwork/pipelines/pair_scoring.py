"""Relevance of text pairs, the shared core of `rerank`, `sentence-similarity` and `/v1/score`.

- A cross-encoder checkpoint (a `*ForSequenceClassification` folder): each (query, document)
  pair is read together, as sentence-transformers' `CrossEncoder.predict` does; one logit goes
  through a sigmoid, two logits through a softmax (the second class is "relevant").
- A sentence-embedding model (a bi-encoder; the default `all-minilm-l6-v2`): the cosine of the
  two texts' embeddings; each distinct text is embedded once however many pairs it is in.
"""

from __future__ import annotations

import torch

from brainwork.engine.encoder import EncoderRunner
from brainwork.errors import ModelFormatError


class PairScorer:
    def __init__(self, runner: EncoderRunner) -> None:
        self.runner = runner
        self.cross = runner.config.is_sequence_classifier
        if self.cross and runner.config.num_labels > 2:
            raise ModelFormatError(
                f"a cross-encoder gives 1 or 2 logits per pair; this checkpoint has {runner.config.num_labels} labels"
            )
        if not self.cross and runner.pooling_modes is None:
            raise ModelFormatError("this sentence-transformers folder has no Pooling module")

    @property
    def kind(self) -> str:
        return "cross-encoder" if self.cross else "bi-encoder"

    def score(self, pairs: list[tuple[str, str]], truncation: bool | None = None) -> torch.Tensor:
        """(N,) scores, one per pair: probabilities for cross-encoders, cosines for bi-encoders."""
        if not pairs:
            return torch.empty(0)
        if self.cross:
            logits = self.runner.classify_logits(pairs, truncation=truncation).float()  # (N, 1 or 2)
            if logits.shape[1] == 1:
                return torch.sigmoid(logits[:, 0])
            return torch.softmax(logits, dim=-1)[:, 1]
        texts = list(dict.fromkeys(t for pair in pairs for t in pair))  # distinct, in first-seen order
        row = {t: i for i, t in enumerate(texts)}
        x = self.runner.embed(texts, normalize=True, truncation=truncation)  # (U, D)
        a = x[[row[p[0]] for p in pairs]]  # (N, D)
        b = x[[row[p[1]] for p in pairs]]  # (N, D)
        return (a * b).sum(-1)
