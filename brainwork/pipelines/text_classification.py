"""`sentiment-analysis` / `text-classification`.

With a fine-tuned sequence-classification checkpoint the model's own head decides. With none
(the offline default) sentiment is zero-shot over sentence embeddings: each input is compared
with hand-written positive and negative examples (`sentiment_examples.py`); the mean of its
`k` best similarities per class, scaled and soft-maxed, gives the label probabilities.
"""

from __future__ import annotations

from typing import Any

import torch

from brainwork.catalog import DEFAULT_EMBEDDING_MODEL
from brainwork.pipelines.embeddings import load_encoder
from brainwork.pipelines.inputs import as_text_list
from brainwork.pipelines.sentiment_examples import NEGATIVE, POSITIVE

_FUNCTIONS = ("softmax", "sigmoid", "none")
_SCALE = 40.0  # similarity gaps of ~0.1 between classes mean ~98% confidence
_K = 3


class TextClassificationPipeline:
    def __init__(self, model: str | None = None, **kwargs: Any) -> None:
        self.runner = load_encoder(model or DEFAULT_EMBEDDING_MODEL, **kwargs)
        self.native = self.runner.config.is_sequence_classifier
        if self.native:
            self.labels = [self.runner.id2label[i] for i in range(len(self.runner.id2label))]
        else:
            self.labels = ["NEGATIVE", "POSITIVE"]
            examples = self.runner.embed(NEGATIVE + POSITIVE, normalize=True)  # (E, D)
            self._examples = (examples[: len(NEGATIVE)], examples[len(NEGATIVE) :])

    def __call__(
        self,
        inputs: str | list[str],
        *,
        top_k: int | None = 1,
        function_to_apply: str | None = None,
        truncation: bool | None = None,
    ) -> list[Any]:
        """`top_k=1` (default): one `{'label', 'score'}` per input; `top_k=None`: every label, best first."""
        texts, single = as_text_list(inputs)
        if top_k is not None and (not isinstance(top_k, int) or top_k < 1):
            raise ValueError(f"top_k: expected None or an integer >= 1, got {top_k!r}")
        if function_to_apply is not None and function_to_apply not in _FUNCTIONS:
            raise ValueError(f"function_to_apply: expected one of {', '.join(_FUNCTIONS)}, got {function_to_apply!r}")
        scores = self._scores(texts, function_to_apply, truncation)  # (N, L)
        results = []
        for row in scores.tolist():
            ranked = sorted(zip(self.labels, row, strict=True), key=lambda x: -x[1])
            items = [{"label": lab, "score": s} for lab, s in ranked[: top_k or len(ranked)]]
            results.append(items[0] if top_k == 1 else items)
        if single and top_k != 1:
            return results[0]
        return results

    def _scores(self, texts: list[str], fn: str | None, truncation: bool | None) -> torch.Tensor:
        if not self.native:
            if fn not in (None, "softmax"):
                raise ValueError("function_to_apply: the zero-shot sentiment default only gives softmax scores")
            x = self.runner.embed(texts, normalize=True, truncation=truncation)  # (N, D)
            sims = [(x @ ex.T).topk(min(_K, ex.shape[0]), dim=-1).values.mean(-1) for ex in self._examples]
            return torch.softmax(_SCALE * torch.stack(sims, dim=-1), dim=-1)
        logits = self.runner.classify_logits(texts, truncation=truncation).float()  # (N, L)
        cfg = self.runner.config
        if fn is None:
            multi = cfg.problem_type == "multi_label_classification" or cfg.num_labels == 1
            fn = "sigmoid" if multi else "softmax"
        if fn == "softmax":
            return torch.softmax(logits, dim=-1)
        if fn == "sigmoid":
            return torch.sigmoid(logits)
        return logits
