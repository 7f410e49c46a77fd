"""Sentiment from a chat model's label likelihoods: the offline default when no fine-tuned
sentiment checkpoint is installed.

The prompt asks whether the author is happy or unhappy, after eight hand-written example turns
(`sentiment_examples.TWEET_SHOTS`); the next-token probabilities of "happy" and "unhappy",
renormalised over the two, are the POSITIVE and NEGATIVE scores. The examples are the same for
every input, so the prefix cache computes them once per engine. Measured on
`benchmarks/data/sentiment_tweets.tsv` (see `benchmarks/sentiment_accuracy.py`), this framing
beat asking for "positive"/"negative" on both Qwen2.5-Coder sizes, and the 1.5B model clears the
0.5B one by ten points, hence the default.
"""

from __future__ import annotations

from typing import Any

import torch

from brainwork.llm import LLM
from brainwork.pipelines.label_scoring import label_tokens, score_prompts
from brainwork.pipelines.sentiment_examples import TWEET_SHOTS

_SYSTEM = (
    "You read tweets customers wrote about a company. Is the customer happy or unhappy with it? Reply with one word."
)
_WORDS = ("unhappy", "happy")  # in the order of LABELS
LABELS = ("NEGATIVE", "POSITIVE")


class ChatSentiment:
    def __init__(self, model: str, *, progress: bool = False, **llm_args: Any) -> None:
        llm_args.setdefault("max_model_len", 2048)
        self.llm = LLM(model, progress=progress, **llm_args)
        self.progress = progress
        self._tokens = label_tokens(self.llm, list(_WORDS))
        self._turns: list[dict[str, str]] = [{"role": "system", "content": _SYSTEM}]
        for text, happy in TWEET_SHOTS:
            self._turns += [
                {"role": "user", "content": f"Tweet: {text}"},
                {"role": "assistant", "content": _WORDS[happy]},
            ]

    def scores(self, texts: list[str], truncation: bool | None) -> torch.Tensor:
        """(N, 2) probabilities in the order of LABELS."""
        prompts = [self._prompt(i, t, bool(truncation)) for i, t in enumerate(texts)]
        return score_prompts(self.llm, prompts, self._tokens, self.progress and len(texts) > 1).exp()

    def _prompt(self, index: int, text: str, truncation: bool) -> list[int]:
        ids = self.llm.encode_chat([*self._turns, {"role": "user", "content": f"Tweet: {text}"}])
        over = len(ids) - (self.llm.max_model_len - 1)
        if over <= 0:
            return ids
        if not truncation:
            raise ValueError(
                f"inputs[{index}]: {len(ids)} prompt tokens with the examples, over the model's context of "
                f"{self.llm.max_model_len}; pass truncation=True to cut the text"
            )
        text_ids = self.llm.tokenizer.encode(text, add_special_tokens=False)
        keep = len(text_ids) - over - 2  # re-tokenizing the cut text can shift a token or two
        if keep < 1:
            raise ValueError(
                f"inputs[{index}]: the model's context of {self.llm.max_model_len} cannot hold the examples"
            )
        return self._prompt(index, self.llm.tokenizer.decode(text_ids[:keep]), truncation)
