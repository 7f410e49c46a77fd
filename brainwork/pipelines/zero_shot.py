"""`zero-shot-classification`: `candidate_labels`, `hypothesis_template`, `multi_label`, as
Hugging Face shapes it (`{"sequence", "labels", "scores"}`, best first).

With no NLI checkpoint installed (the offline default) a chat model scores the labels
(`label_scoring.py`): the answer is written as the hypothesis ("This example is") and the model's
next-token distribution over the labels' first tokens decides, for all labels in one forward
pass per input. `multi_label=True` asks one yes/no question per label instead (all of them in
the same engine batch) and gives each label P(yes) on its own.
"""

from __future__ import annotations

from typing import Any

import torch

from brainwork.catalog import DEFAULT_LABELLING_MODEL
from brainwork.llm import LLM
from brainwork.pipelines.inputs import as_text_list
from brainwork.pipelines.label_scoring import CONTENT_FREE, label_tokens, score_prompts

DEFAULT_TEMPLATE = "This example is {}."


class ZeroShotClassificationPipeline:
    def __init__(
        self,
        model: str | None = None,
        *,
        llm: LLM | None = None,
        calibrate: bool = True,
        max_text_tokens: int | None = None,
        progress: bool = False,
        **llm_args: Any,
    ) -> None:
        """`calibrate`: divide out the model's label prior (measured on a content-free input).
        `max_text_tokens`: keep only the first N tokens of each input (None: an input that does
        not fit the context window is an error)."""
        self.llm = llm or LLM(model or DEFAULT_LABELLING_MODEL, progress=progress, **llm_args)
        self.calibrate, self.max_text_tokens, self.progress = calibrate, max_text_tokens, progress

    def __call__(
        self,
        sequences: str | list[str],
        candidate_labels: str | list[str] | None = None,
        *,
        hypothesis_template: str = DEFAULT_TEMPLATE,
        multi_label: bool = False,
    ) -> Any:
        texts, single = as_text_list(sequences)
        labels = _check_labels(candidate_labels)
        if hypothesis_template.count("{}") != 1:
            raise ValueError(
                f"hypothesis_template: needs exactly one '{{}}' for the label, got {hypothesis_template!r}"
            )
        if multi_label:
            scores = self._multi_label(texts, labels, hypothesis_template)  # (N, L) independent
        else:
            scores = self._single_label(texts, labels, hypothesis_template)  # (N, L) rows sum to 1
        out = []
        for text, row in zip(texts, scores.tolist(), strict=True):
            ranked = sorted(zip(labels, row, strict=True), key=lambda x: -x[1])
            out.append({"sequence": text, "labels": [r[0] for r in ranked], "scores": [r[1] for r in ranked]})
        return out[0] if single else out

    # ---- single label: one pass per input, all labels -------------------------------------------
    def _single_label(self, texts: list[str], labels: list[str], template: str) -> torch.Tensor:
        tokens = label_tokens(self.llm, labels)
        prompts = [self._prompt(t, labels, template) for t in texts]
        logp = score_prompts(self.llm, prompts, tokens, self.progress)  # (N, L)
        if self.calibrate:
            prior = score_prompts(self.llm, [self._prompt(CONTENT_FREE, labels, template)], tokens)  # (1, L)
            logp = torch.log_softmax(logp - prior, dim=-1)
        return logp.exp()

    def _prompt(self, text: str, labels: list[str], template: str) -> list[int]:
        head = template.split("{}")[0].rstrip()
        ask = (
            f"Text: {self._clip(text)}\n\nWhich of these fits the text best: {', '.join(labels)}?\n"
            f'Answer by completing the sentence "{template.format("...")}"'
        )
        ids = self.llm.encode_chat([{"role": "user", "content": ask}])
        # the answer starts with the hypothesis; its next token is the label
        return ids + (self.llm.tokenizer.encode(head, add_special_tokens=False) if head else [])

    # ---- multi label: a yes/no question per label -----------------------------------------------
    def _multi_label(self, texts: list[str], labels: list[str], template: str) -> torch.Tensor:
        yes_no = label_tokens(self.llm, ["Yes", "No"])
        prompts = [self._yes_no_prompt(t, template.format(label)) for t in texts for label in labels]
        logp = score_prompts(self.llm, prompts, yes_no, self.progress)  # (N * L, 2)
        if self.calibrate:
            prior = score_prompts(
                self.llm, [self._yes_no_prompt(CONTENT_FREE, template.format(lab)) for lab in labels], yes_no
            )  # (L, 2)
            logp = torch.log_softmax(logp.view(len(texts), len(labels), 2) - prior, dim=-1).view(-1, 2)
        return logp[:, 0].exp().view(len(texts), len(labels))

    def _yes_no_prompt(self, text: str, hypothesis: str) -> list[int]:
        ask = f'Text: {self._clip(text)}\n\nIs this true of the text: "{hypothesis}"? Answer Yes or No.'
        return self.llm.encode_chat([{"role": "user", "content": ask}])

    def _clip(self, text: str) -> str:
        if self.max_text_tokens is None:
            return text
        ids = self.llm.tokenizer.encode(text, add_special_tokens=False)
        return text if len(ids) <= self.max_text_tokens else self.llm.tokenizer.decode(ids[: self.max_text_tokens])


def _check_labels(candidate_labels: str | list[str] | None) -> list[str]:
    if candidate_labels is None:
        raise ValueError("candidate_labels: required (the labels to choose from)")
    labels = [candidate_labels] if isinstance(candidate_labels, str) else list(candidate_labels)
    if not labels:
        raise ValueError("candidate_labels: empty list")
    for i, label in enumerate(labels):
        if not isinstance(label, str) or not label.strip():
            raise ValueError(f"candidate_labels[{i}]: expected a non-empty string, got {label!r}")
    dupes = sorted({lab for lab in labels if labels.count(lab) > 1})
    if dupes:
        raise ValueError(f"candidate_labels: duplicate labels {dupes}")
    return labels
