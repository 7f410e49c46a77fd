"""Zero-shot labels from a chat model.

With no NLI checkpoint installed (the offline default) a chat model scores the labels
(`label_scoring.py`): the answer is written as the hypothesis ("This example is") and the model's
next-token distribution over the labels' first tokens decides, for all labels in one forward
pass per input. `multi_label=True` asks one yes/no question per label instead (all of them in
the same engine batch) and gives each label P(yes) on its own.
"""

from __future__ import annotations

from typing import Any

import torch

from brainwork.llm import LLM
from brainwork.pipelines.label_scoring import CONTENT_FREE, label_tokens, score_prompts


class ChatZeroShot:
    """Label scores from a chat model's next-token distribution (see the module docstring)."""

    def __init__(
        self,
        model: str,
        *,
        llm: LLM | None = None,
        calibrate: bool = True,
        max_text_tokens: int | None = None,
        progress: bool = False,
        **llm_args: Any,
    ) -> None:
        self.llm = llm or LLM(model, progress=progress, **llm_args)
        self.calibrate, self.max_text_tokens, self.progress = calibrate, max_text_tokens, progress

    def scores(self, texts: list[str], labels: list[str], template: str, multi_label: bool) -> torch.Tensor:
        """(N, L): rows sum to 1, or each label's own P(yes) with `multi_label`."""
        if multi_label:
            return self._multi_label(texts, labels, template)
        return self._single_label(texts, labels, template)

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
