"""Reranking retrieved passages with a chat model, by query likelihood.

A passage is scored by how likely the model finds the query after reading it: log P(query |
passage), summed over the query's tokens (UPR, Sachan et al. 2022, "Improving Passage Retrieval
with Zero-Shot Question Generation"). A cross-encoder reranker would need a checkpoint trained for
it, which nothing installable offline ships; any instruction-tuned decoder can do this. The
query's tokens are scored as prompt tokens (`prompt_logprobs` from `prompt_logprobs_start`), so
one forward pass per passage does it, and a passage seen for an earlier query is served from the
prefix cache.

The model's scores are fused with the retriever's order: each hit keeps its reciprocal rank,
1 / (RRF_K + rank), and gains `weight` times the model's posterior over the hits, softmax(log
P(query | passage)) (Bayes with a uniform prior over them). The posterior is near 1 for a
passage only where the model clearly prefers it, so a confident model moves a hit up by up to
`weight` (0.075: from 5th place to 1st) while a near tie leaves the retriever's order. A
small model's bare order is unreliable: fused by rank instead, it demoted about as many right
answers as it promoted. On the BBC corpus (2,225 headlines as queries, top 5, SmolLM2-135M
scoring the hybrid top 10, benchmarks/rag_bbc.py --rerank): 0.9681 without, 0.9726 with weight
0.075 (0.9726 at 0.05, 0.9730 at 0.1; the even and odd halves of the queries alike), against
0.970 at best when the model's rank was fused instead (reciprocal rank fusion, weight 0.25 to 1).
About 1.6 s per query on two cores.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from brainwork.rag.search import Hit

# the passage first, then an instruction whose natural continuation is the query
TEMPLATE = "Passage: {passage}\n\nA search query that this passage answers:"
RRF_K = 5  # as the hybrid searcher fuses its rankers


class QueryLikelihoodReranker:
    """Reorders the top `depth` hits of a search; `llm` is a `brainwork.LLM` (or a zero-argument
    function that loads one on first use)."""

    def __init__(
        self,
        llm: Any,
        depth: int = 10,
        weight: float = 0.075,  # measured on BBC headlines (benchmarks/rag_bbc.py; the module's docstring)
        max_passage_tokens: int = 160,
        template: str = TEMPLATE,
    ) -> None:
        if not isinstance(depth, int) or depth < 2:
            raise ValueError(f"depth must be an integer >= 2 (hits to reorder), got {depth!r}")
        if not weight >= 0:
            raise ValueError(f"weight must be >= 0, got {weight!r}")
        if "{passage}" not in template:
            raise ValueError("template must contain '{passage}'")
        self._llm, self.depth, self.weight = llm, depth, weight
        self.max_passage_tokens, self.template = max_passage_tokens, template

    @property
    def llm(self) -> Any:
        if callable(self._llm) and not hasattr(self._llm, "generate"):
            self._llm = self._llm()
        return self._llm

    def scores(self, query: str, passages: Sequence[str]) -> list[float]:
        """log P(query | passage) for each passage, in one engine batch."""
        return self.pair_scores([(query, p) for p in passages])

    def pair_scores(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        """log P(query | passage) for each (query, passage) pair, all in one engine batch (many
        queries' candidates at once keep the engine's batches full)."""
        requests = self.requests(self.llm.tokenizer, pairs)
        prompts = [{"prompt_token_ids": ids} for ids, _ in requests]
        outs = self.llm.generate(prompts, [p for _, p in requests], use_tqdm=False) if prompts else []
        return [query_likelihood(out) for out in outs]

    def requests(self, tokenizer: Any, pairs: Sequence[tuple[str, str]]) -> list[tuple[list[int], Any]]:
        """(prompt ids, sampling params) per pair: the template around the passage, then the query,
        whose tokens are the scored prompt logprobs. An engine driven elsewhere (the server's) runs
        them; `query_likelihood` reads each output."""
        from brainwork.sampling_params import SamplingParams

        out = []
        for query, text in pairs:
            query_ids = tokenizer.encode(" " + query.strip(), add_special_tokens=False)
            words = tokenizer.encode(text, add_special_tokens=False)[: self.max_passage_tokens]
            head = tokenizer.encode(self.template.format(passage=tokenizer.decode(words)), add_special_tokens=False)
            start = len(head)
            out.append(
                (
                    head + query_ids,
                    SamplingParams(max_tokens=1, temperature=0, prompt_logprobs=0, prompt_logprobs_start=start),
                )
            )
        return out

    def rerank(self, query: str, hits: list[Hit]) -> list[Hit]:
        """The first `depth` hits reordered (their `score` becomes the fused score); the rest follow."""
        head = hits[: self.depth]
        if len(head) < 2:
            return hits
        return self.fuse(head, self.scores(query, [h.text for h in head])) + hits[self.depth :]

    def fuse(self, hits: list[Hit], likelihood: Sequence[float]) -> list[Hit]:
        """`hits` (the retriever's order) reordered by reciprocal rank plus `weight` times the model's
        posterior over them; each hit's `score` becomes that sum."""
        top = max(likelihood, default=0.0)
        odds = [math.exp(x - top) for x in likelihood]  # shifted so the largest is 1: no overflow
        total = sum(odds)
        fused = [1.0 / (RRF_K + i + 1) + self.weight * odds[i] / total for i in range(len(hits))]
        order = sorted(range(len(hits)), key=lambda i: (-fused[i], i))
        return [replace(hits[i], score=fused[i], likelihood=likelihood[i]) for i in order]


def query_likelihood(out: Any) -> float:
    """The summed prompt logprobs of a finished scoring request (`QueryLikelihoodReranker.requests`)."""
    if out.error:
        raise RuntimeError(f"reranking failed: {out.error}")
    scored = zip(out.prompt_logprobs or [], out.prompt_token_ids, strict=True)
    return sum(e[t].logprob for e, t in scored if e is not None)  # None: the passage, not scored
