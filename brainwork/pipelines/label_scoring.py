"""Label likelihoods from a chat model: zero-shot classification without a classifier.

Each input becomes one chat prompt whose answer starts with a label; the model's next-token
distribution at the answer's first position, restricted to the labels' first tokens, gives every
label's probability from ONE forward pass (not one pass per label). A label's spellings
("sport", "Sport", " sport") are pooled. All prompts of a call run through the engine together
(continuous batching; a shared instruction prefix is computed once by the prefix cache).

Contextual calibration (Zhao et al., 2021, "Calibrate Before Use"): the same prompt with a
content-free text ("N/A") shows the model's prior over the labels; dividing it out removes the
bias towards labels that are merely likelier to be said.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from brainwork.llm import LLM
from brainwork.sampling_params import SamplingParams

CONTENT_FREE = "N/A"


@dataclass(frozen=True)
class LabelTokens:
    labels: tuple[str, ...]
    ids: tuple[tuple[int, ...], ...]  # per label: first-token ids of its spellings, shared ones removed


def label_tokens(llm: LLM, labels: Sequence[str]) -> LabelTokens:
    """First tokens of each label's spellings; a token two labels share says nothing and is dropped."""
    enc = llm.tokenizer.encode
    per_label = []
    for label in labels:
        spellings = {
            label,
            label.lower(),
            label.capitalize(),
            label.upper(),
            " " + label,
            " " + label.lower(),
            " " + label.capitalize(),
        }
        per_label.append({ids[0] for s in spellings if (ids := enc(s, add_special_tokens=False))})
    owners: dict[int, int] = {}
    for tokens in per_label:
        for t in tokens:
            owners[t] = owners.get(t, 0) + 1
    ids = tuple(tuple(sorted(t for t in tokens if owners[t] == 1)) for tokens in per_label)
    clashing = [lab for lab, t in zip(labels, ids, strict=True) if not t]
    if clashing:
        raise ValueError(
            f"candidate_labels: {clashing} start with the same token as another label, so one forward pass "
            "cannot tell them apart; rename them so their first words differ"
        )
    return LabelTokens(tuple(labels), ids)


def score_prompts(llm: LLM, prompts: list[list[int]], tokens: LabelTokens, progress: bool = False) -> torch.Tensor:
    """(N, L) log-probabilities of each label as the next token of each prompt, pooled over
    spellings and normalised over the labels."""
    flat = torch.tensor([t for ids in tokens.ids for t in ids], dtype=torch.long)  # (T,)
    owner = torch.tensor([i for i, ids in enumerate(tokens.ids) for _ in ids], dtype=torch.long)  # (T,)
    rows: list[torch.Tensor | None] = [None] * len(prompts)

    def capture(i: int) -> Callable[[list[int], Any], Any]:
        def fn(_: list[int], logits: torch.Tensor) -> torch.Tensor:
            rows[i] = torch.log_softmax(logits.float(), dim=-1)[flat]  # (T,) over the whole vocabulary
            return logits

        return fn

    params = [SamplingParams(temperature=0, max_tokens=1, logits_processors=[capture(i)]) for i in range(len(prompts))]
    outs = llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=progress)
    for out in outs:
        if out.error:
            raise RuntimeError(f"scoring failed: {out.error}")
    token_lp = torch.stack([r for r in rows if r is not None])  # (N, T)
    per_label = torch.full((len(prompts), len(tokens.ids)), float("-inf"))  # (N, L)
    for j in range(len(tokens.ids)):
        per_label[:, j] = torch.logsumexp(token_lp[:, owner == j], dim=-1)
    return torch.log_softmax(per_label, dim=-1)
