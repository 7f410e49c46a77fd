"""`zero-shot-classification`: `candidate_labels`, `hypothesis_template`, `multi_label`, as
Hugging Face shapes it (`{"sequence", "labels", "scores"}`, best first).

The model decides the method, and every method scores all labels of an input in one batched
pass, never one pass per label:
- a chat model (GGUF; the default `qwen2.5-coder-1.5b-instruct`): label likelihoods under a
  prompt (`zero_shot_chat.py`);
- an NLI checkpoint (a Hugging Face folder with an entailment label): natively, as transformers;
- a sentence-embedding model: similarity of text and hypothesis (`zero_shot_encoder.py`).
"""

from __future__ import annotations

from typing import Any

import torch

from brainwork.catalog import DEFAULT_LABELLING_MODEL
from brainwork.pipelines.inputs import as_text_list

DEFAULT_TEMPLATE = "This example is {}."


class ZeroShotClassificationPipeline:
    def __init__(self, model: str | None = None, *, llm: Any = None, runner: Any = None, **kwargs: Any) -> None:
        """Chat models take `calibrate` (divide out the label prior, default True),
        `max_text_tokens` (keep the first N tokens of each input) and the `LLM` arguments;
        encoder models take the `EncoderRunner` arguments (`truncation`, `token_budget`).
        `llm` / `runner`: a model already loaded, used instead of `model`."""
        from brainwork.store import resolve_model

        name = model or DEFAULT_LABELLING_MODEL
        self.method: Any
        if llm is not None or (runner is None and resolve_model(name).format == "gguf"):
            from brainwork.pipelines.zero_shot_chat import ChatZeroShot

            self.method, self.kind = ChatZeroShot(name, llm=llm, **kwargs), "chat"
            return
        from brainwork.pipelines.embeddings import load_encoder
        from brainwork.pipelines.zero_shot_encoder import EmbeddingZeroShot, NliZeroShot

        runner = runner or load_encoder(name, **kwargs)
        if runner.config.is_sequence_classifier:
            self.method, self.kind = NliZeroShot(runner), "nli"
        else:
            self.method, self.kind = EmbeddingZeroShot(runner), "embedding"

    def __call__(
        self,
        sequences: str | list[str],
        candidate_labels: str | list[str] | None = None,
        *,
        hypothesis_template: str = DEFAULT_TEMPLATE,
        multi_label: bool = False,
        truncation: bool | None = None,
        adapt: bool = False,
    ) -> Any:
        """`adapt` (embedding models only): let the label prototypes adapt to this call's inputs
        (transductive; see `zero_shot_encoder.py`)."""
        texts, single = as_text_list(sequences, "sequences")
        labels = check_labels(candidate_labels)
        if hypothesis_template.count("{}") != 1:
            raise ValueError(
                f"hypothesis_template: needs exactly one '{{}}' for the label, got {hypothesis_template!r}"
            )
        scores = self.scores(texts, labels, hypothesis_template, multi_label, truncation, adapt)  # (N, L)
        out = []
        for text, row in zip(texts, scores.tolist(), strict=True):
            ranked = sorted(zip(labels, row, strict=True), key=lambda x: -x[1])
            out.append({"sequence": text, "labels": [r[0] for r in ranked], "scores": [r[1] for r in ranked]})
        return out[0] if single else out

    def scores(
        self,
        texts: list[str],
        labels: list[str],
        template: str,
        multi_label: bool,
        truncation: bool | None = None,
        adapt: bool = False,
    ) -> torch.Tensor:
        """(N, L) label scores in the order of `labels`."""
        if adapt:
            if self.kind != "embedding":
                raise ValueError(f"adapt: only embedding models adapt label prototypes; this is a {self.kind} model")
            return self.method.scores(texts, labels, template, multi_label, truncation, adapt=True)
        if self.kind == "chat":
            if truncation:
                raise ValueError("truncation: chat models clip inputs with max_text_tokens instead")
            return self.method.scores(texts, labels, template, multi_label)
        return self.method.scores(texts, labels, template, multi_label, truncation)


def check_labels(candidate_labels: str | list[str] | None) -> list[str]:
    if candidate_labels is None:
        raise ValueError("candidate_labels: required (the labels to choose from)")
    if isinstance(candidate_labels, str):
        # as Hugging Face: "a, b" is two labels
        labels = [label.strip() for label in candidate_labels.split(",") if label.strip()]
    else:
        labels = list(candidate_labels)
    if not labels:
        raise ValueError("candidate_labels: empty list")
    for i, label in enumerate(labels):
        if not isinstance(label, str) or not label.strip():
            raise ValueError(f"candidate_labels[{i}]: expected a non-empty string, got {label!r}")
    dupes = sorted({lab for lab in labels if labels.count(lab) > 1})
    if dupes:
        raise ValueError(f"candidate_labels: duplicate labels {dupes}")
    return labels
