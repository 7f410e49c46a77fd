"""`sentiment-analysis` / `text-classification`.

- A fine-tuned sequence-classification checkpoint (a Hugging Face folder with a head and
  `id2label`): the model's own head decides.
- A chat model (a GGUF file or catalog name; the default, `qwen2.5-coder-1.5b-instruct`):
  few-shot label likelihoods (`chat_sentiment.py`).
- A sentence-embedding model without a head (e.g. `all-minilm-l6-v2`: fast, less accurate):
  each input is compared with hand-written positive and negative examples
  (`sentiment_examples.py`); the mean of its `k` best similarities per class, scaled and
  soft-maxed, gives the label probabilities.
"""

from __future__ import annotations

from typing import Any

import torch

from brainwork.catalog import DEFAULT_LABELLING_MODEL
from brainwork.engine.encoder import EncoderRunner
from brainwork.pipelines.chat_sentiment import LABELS, ChatSentiment
from brainwork.pipelines.embeddings import load_encoder
from brainwork.pipelines.inputs import as_text_list
from brainwork.pipelines.sentiment_examples import NEGATIVE, POSITIVE

_FUNCTIONS = ("softmax", "sigmoid", "none")
_SCALE = 40.0  # similarity gaps of ~0.1 between classes mean ~98% confidence
_K = 3


class TextClassificationPipeline:
    def __init__(self, model: str | None = None, *, runner: EncoderRunner | None = None, **kwargs: Any) -> None:
        """`runner`: an encoder already loaded (e.g. shared with other tasks) instead of `model`."""
        from brainwork.store import resolve_model

        name = model or DEFAULT_LABELLING_MODEL
        self.chat: ChatSentiment | None = None
        if runner is None and resolve_model(name).format == "gguf":
            self.chat = ChatSentiment(name, **kwargs)
            self.native, self.labels = False, list(LABELS)
            return
        self.runner = runner or load_encoder(name, **kwargs)
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
        if not self.native and fn not in (None, "softmax"):
            raise ValueError("function_to_apply: zero-shot sentiment only gives softmax scores")
        if self.chat is not None:
            return self.chat.scores(texts, truncation)  # (N, 2)
        if not self.native:
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
