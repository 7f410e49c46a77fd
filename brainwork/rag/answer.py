"""Answers from retrieved chunks: a prompt that fits the chat model's window, numbered sources,
citations `[n]` mapped back to file and chunk, and "I don't know" when nothing relevant is found.

A small model sometimes copies a sentence from a source and writes no `[n]` after it; such an
answer is attributed to the sources its sentences were copied from (most of a sentence's word
5-grams found in one source), so its citations still say where the text came from.

The refusal is decided before generation, from the best cosine between the question and any
chunk (below `min_cosine` the store holds nothing on the subject), so a small model is never
asked to answer from unrelated text, where it would invent.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from brainwork.rag.search import Hit, Results, Searcher
from brainwork.rag.store import Where

I_DONT_KNOW = "I don't know: nothing in the collection is relevant to the question."
DEFAULT_MIN_COSINE = 0.3

SYSTEM = (
    "You answer questions using only the numbered sources you are given. After each fact, write the "
    "number of the source it comes from in square brackets, like [1]. If the sources do not contain "
    'the answer, reply "I don\'t know".'
)

_CITATION = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")
_WORDS = re.compile(r"\w+")
_SENTENCES = re.compile(r"(?<=[.!?])\s+")
QUOTE_NGRAM = 5  # words: shorter spans recur across unrelated news stories
QUOTE_SHARE = 0.5  # of a sentence's n-grams found in one source: copied from it


@dataclass(frozen=True)
class Source:
    number: int  # as the prompt numbers it: [number]
    source: str
    chunk: int
    score: float
    text: str
    also: tuple[str, ...] = ()  # other documents with this same text (search.Hit.also)

    def as_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "source": self.source,
            "chunk": self.chunk,
            "score": self.score,
            "text": self.text,
            "also": list(self.also),
        }


@dataclass
class Answer:
    question: str
    text: str
    sources: list[Source]  # every chunk the prompt carried, numbered
    refused: bool = False  # True: retrieval found nothing relevant, no generation ran
    best_cosine: float = 0.0

    @property
    def cited(self) -> list[Source]:
        """The sources the answer cites (`citation_numbers`), in order of first citation."""
        return [self.sources[n - 1] for n in citation_numbers(self.text, self.sources)]

    def as_dict(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "answer": self.text,
            "refused": self.refused,
            "best_cosine": self.best_cosine,
            "sources": [s.as_dict() for s in self.sources],
            "citations": [s.number for s in self.cited],
        }


def cited_numbers(text: str, count: int) -> list[int]:
    """Numbers in `[n]` or `[n, m]` markers that name one of the `count` sources, first use order."""
    seen: dict[int, None] = {}
    for group in _CITATION.findall(text):
        for part in group.split(","):
            n = int(part)
            if 1 <= n <= count:
                seen.setdefault(n, None)
    return list(seen)


def citation_numbers(text: str, sources: list[Source]) -> list[int]:
    """The source numbers an answer cites: its `[n]` markers, or for an answer with none, the
    sources its sentences were copied from."""
    return cited_numbers(text, len(sources)) or quoted_numbers(text, [s.text for s in sources])


def quoted_numbers(text: str, sources: list[str]) -> list[int]:
    """Numbers (from 1) of the sources that `text`'s sentences were copied from: for each sentence
    of at least QUOTE_NGRAM words, the source holding the most of its word n-grams, when it holds
    at least QUOTE_SHARE of them. First use order."""
    grams = [_ngrams(s) for s in sources]
    seen: dict[int, None] = {}
    for sentence in _SENTENCES.split(text):
        want = _ngrams(sentence)
        if not want:
            continue
        shared = [len(want & g) for g in grams]
        best = max(range(len(shared)), key=lambda i: shared[i], default=None)
        if best is not None and shared[best] >= QUOTE_SHARE * len(want):
            seen.setdefault(best + 1, None)
    return list(seen)


def _ngrams(text: str) -> set[tuple[str, ...]]:
    words = _WORDS.findall(text.lower())
    return {tuple(words[i : i + QUOTE_NGRAM]) for i in range(len(words) - QUOTE_NGRAM + 1)}


def build_messages(question: str, hits: list[Hit]) -> list[dict[str, str]]:
    blocks = [f"[{i}] (from {_short(h.source)}, chunk {h.chunk})\n{h.text}" for i, h in enumerate(hits, 1)]
    user = (
        "Sources:\n\n" + "\n\n".join(blocks) + f"\n\nQuestion: {question}\n"
        "Answer in one or two sentences and cite the source number in square brackets, like [1]."
    )
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def fit_prompt(
    encode: Callable[[list[dict[str, str]]], list[int]], question: str, hits: list[Hit], window: int, max_tokens: int
) -> tuple[list[int], list[Hit]]:
    """Prompt token ids and the hits they carry: the lowest-ranked hits are dropped until the prompt
    plus `max_tokens` of answer fit in `window`. Raises ValueError if the question alone does not."""
    kept = list(hits)
    while True:
        ids = encode(build_messages(question, kept))
        if len(ids) + max_tokens <= window:
            return ids, kept
        if not kept:
            raise ValueError(
                f"question: {len(ids)} prompt tokens + {max_tokens} answer tokens do not fit the "
                f"{window}-token context window even without sources"
            )
        kept.pop()


@dataclass
class Prepared:
    question: str
    results: Results
    prompt_ids: list[int] = field(default_factory=list)
    sources: list[Source] = field(default_factory=list)
    refused: bool = False


class Answerer:
    """Retrieval plus a chat model: a `brainwork.LLM` (its tokenizer and window fit the prompt, its
    engine generates) or a zero-argument function that loads one."""

    def __init__(
        self,
        searcher: Searcher,
        llm: Any,
        k: int = 4,
        min_cosine: float = DEFAULT_MIN_COSINE,
        max_tokens: int = 160,
    ) -> None:
        self.searcher, self.k, self.min_cosine, self.max_tokens = searcher, k, min_cosine, max_tokens
        self._llm = llm

    @property
    def llm(self) -> Any:
        """The chat model; `llm` may be given as a zero-argument loader, called on first need (a
        refusal needs no model at all)."""
        if callable(self._llm) and not hasattr(self._llm, "encode_chat"):
            self._llm = self._llm()
        return self._llm

    def prepare(self, question: str, where: Where | None = None, max_tokens: int | None = None) -> Prepared:
        results = self.searcher.run(question, self.k, where)
        if not results.hits or results.best_cosine < self.min_cosine:
            return Prepared(question, results, refused=True)
        budget = max_tokens or self.max_tokens
        ids, kept = fit_prompt(self.llm.encode_chat, question, results.hits, self.llm.max_model_len, budget)
        sources = [Source(i, h.source, h.chunk, h.score, h.text, h.also) for i, h in enumerate(kept, 1)]
        return Prepared(question, results, ids, sources)

    def sampling(self, max_tokens: int | None = None, temperature: float = 0.0, seed: int | None = None) -> Any:
        from brainwork.sampling_params import SamplingParams

        return SamplingParams(max_tokens=max_tokens or self.max_tokens, temperature=temperature, seed=seed)

    def ask(self, question: str, where: Where | None = None, **sampling: Any) -> Answer:
        chunks = self.stream(question, where, **sampling)
        text = "".join(chunks)
        return chunks.answer(text)

    def ask_many(self, questions: list[str], where: Where | None = None, **sampling: Any) -> list[Answer]:
        """Answer several questions in one batch: the engine decodes all prompts together."""
        prepared = [self.prepare(q, where, sampling.get("max_tokens")) for q in questions]
        asked = [p for p in prepared if not p.refused]
        texts: dict[int, str] = {}
        if asked:
            outputs = self.llm.generate(
                [{"prompt_token_ids": p.prompt_ids} for p in asked], self.sampling(**sampling), use_tqdm=False
            )
            texts = {id(p): out.outputs[0].text for p, out in zip(asked, outputs, strict=True)}
        return [
            Answer(
                p.question,
                I_DONT_KNOW if p.refused else texts[id(p)].strip(),
                p.sources,
                p.refused,
                p.results.best_cosine,
            )
            for p in prepared
        ]

    def stream(self, question: str, where: Where | None = None, **sampling: Any) -> AnswerStream:
        prepared = self.prepare(question, where, sampling.get("max_tokens"))
        return AnswerStream(self, prepared, sampling)


class AnswerStream:
    """Iterate for the answer's text deltas; `.sources` is known before the first one."""

    def __init__(self, answerer: Answerer, prepared: Prepared, sampling: dict[str, Any]) -> None:
        self.prepared, self.sources = prepared, prepared.sources
        self._answerer, self._sampling = answerer, sampling

    def __iter__(self) -> Iterator[str]:
        if self.prepared.refused:
            yield I_DONT_KNOW
            return
        params = self._answerer.sampling(**self._sampling)
        for out in self._answerer.llm.stream({"prompt_token_ids": self.prepared.prompt_ids}, params):
            for c in out.outputs:
                if c.text:
                    yield c.text

    def answer(self, text: str) -> Answer:
        p = self.prepared
        return Answer(p.question, text.strip(), p.sources, p.refused, p.results.best_cosine)


def _short(source: str) -> str:
    """The last two parts of a path: enough to tell sources apart, few tokens."""
    parts = source.replace("\\", "/").rstrip("/").split("/")
    return "/".join(parts[-2:])
