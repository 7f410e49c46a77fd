"""Cutting text into chunks of at most `max_tokens` tokens of the embedding model, with overlap.

Paragraphs stay whole when they fit; a chunk ends at a paragraph boundary once it is at least
half full, rather than cutting the next paragraph. A paragraph that cannot fit is split at
sentence ends, and a sentence longer than a chunk at word boundaries. The next chunk repeats the
previous chunk's last sentences up to `overlap` tokens, so a fact cut at a boundary is whole in
one of the two.

`passages` gives the finer units that search also embeds: a document's paragraphs (each a
passage, a long one cut like a chunk) and its lead, the first sentence. A short query such as a
headline often matches one paragraph or the opening sentence better than a 200-token chunk
around it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

# a sentence ends at . ! or ? and any closing quotes or brackets, before white space
_SENTENCE_END = re.compile(r"[.!?][\"'\u201d\u2019)\]]*(?=\s+\S)")

CountTokens = Callable[[list[str]], list[int]]  # texts -> token counts, without special tokens


@dataclass(frozen=True)
class _Unit:
    paragraph: int
    text: str
    tokens: int


class Chunker:
    def __init__(self, count_tokens: CountTokens, max_tokens: int = 200, overlap: int = 40) -> None:
        if max_tokens < 16:
            raise ValueError(f"max_tokens must be >= 16, got {max_tokens}")
        if not 0 <= overlap < max_tokens // 2:
            raise ValueError(f"overlap must be in [0, max_tokens / 2), got {overlap}")
        self.count, self.max_tokens, self.overlap = count_tokens, max_tokens, overlap

    @property
    def signature(self) -> str:
        """Part of a document's content hash: other settings re-chunk an unchanged file."""
        return f"chunks{self.max_tokens}/{self.overlap}+passages"

    def split_all(self, text: str) -> tuple[list[str], str, list[str]]:
        """`split(text)` and `passages(text)` together, each paragraph's tokens counted once."""
        paragraphs = _paragraphs(text)
        sizes = self.count(paragraphs) if paragraphs else []
        return (self._chunks(paragraphs, sizes), *self._passages(paragraphs, sizes))

    def passages(self, text: str) -> tuple[str, list[str]]:
        """(the lead sentence, the paragraphs); a paragraph over `max_tokens` is cut at sentence
        ends (words, for a sentence over it) into pieces that fit, with no overlap. ("", []) for
        a text with no words."""
        paragraphs = _paragraphs(text)
        return self._passages(paragraphs, self.count(paragraphs) if paragraphs else [])

    def _passages(self, paragraphs: list[str], sizes: list[int]) -> tuple[str, list[str]]:
        if not paragraphs:
            return "", []
        out: list[str] = []
        for i, (para, size) in enumerate(zip(paragraphs, sizes, strict=True)):
            if size <= self.max_tokens:
                out.append(para)
                continue
            piece: list[_Unit] = []
            for unit in self._sentences(i, para):
                if piece and sum(u.tokens for u in piece) + unit.tokens > self.max_tokens:
                    out.append(_join(piece))
                    piece = []
                piece.append(unit)
            out.append(_join(piece))
        first = _SENTENCE_END.search(paragraphs[0])
        lead = paragraphs[0][: first.end()] if first else paragraphs[0]
        return lead, out

    def split(self, text: str) -> list[str]:
        paragraphs = _paragraphs(text)
        return self._chunks(paragraphs, self.count(paragraphs) if paragraphs else [])

    def _chunks(self, paragraphs: list[str], sizes: list[int]) -> list[str]:
        if not paragraphs:
            return []
        chunks: list[list[_Unit]] = []
        current: list[_Unit] = []
        for i, (para, size) in enumerate(zip(paragraphs, sizes, strict=True)):
            used = sum(u.tokens for u in current)
            if used + size <= self.max_tokens:
                current.append(_Unit(i, para, size))
                continue
            if size <= self.max_tokens and used >= self.max_tokens // 2:
                chunks.append(current)
                current = [*self._carry(current, size), _Unit(i, para, size)]
                continue
            for unit in self._sentences(i, para):
                if sum(u.tokens for u in current) + unit.tokens > self.max_tokens and current:
                    chunks.append(current)
                    current = self._carry(current, unit.tokens)
                current.append(unit)
        if current:
            chunks.append(current)
        return [_join(c) for c in chunks]

    def _carry(self, previous: list[_Unit], incoming: int) -> list[_Unit]:
        """The last units of `previous` within the overlap budget (never all of it), if the
        incoming unit still fits after them."""
        tail: list[_Unit] = []
        total = 0
        for unit in reversed(previous[1:]):
            if total + unit.tokens > self.overlap:
                break
            tail.insert(0, unit)
            total += unit.tokens
        return tail if total + incoming <= self.max_tokens else []

    def _sentences(self, paragraph: int, text: str) -> list[_Unit]:
        sentences, start = [], 0
        for m in _SENTENCE_END.finditer(text):
            sentences.append(text[start : m.end()].strip())
            start = m.end()
        sentences = [s for s in [*sentences, text[start:].strip()] if s]
        sizes = self.count(sentences)
        units: list[_Unit] = []
        for sentence, size in zip(sentences, sizes, strict=True):
            if size <= self.max_tokens:
                units.append(_Unit(paragraph, sentence, size))
            else:
                units += self._words(paragraph, sentence, size)
        return units

    def _words(self, paragraph: int, text: str, size: int) -> list[_Unit]:
        """A sentence over the limit, cut at word boundaries into pieces that fit."""
        words = text.split()
        pieces = max(2, -(-size // (self.max_tokens - 8)))
        while True:
            step = -(-len(words) // pieces)
            parts = [" ".join(words[j : j + step]) for j in range(0, len(words), step)]
            counts = self.count(parts)
            if max(counts) <= self.max_tokens or step == 1:
                return [_Unit(paragraph, p, c) for p, c in zip(parts, counts, strict=True)]
            pieces += 1


def _paragraphs(text: str) -> list[str]:
    """Blank-line-separated paragraphs, white space collapsed, empty ones dropped."""
    return [p for p in (" ".join(p.split()) for p in re.split(r"\n\s*\n", text)) if p]


def _join(units: list[_Unit]) -> str:
    out = ""
    for i, unit in enumerate(units):
        if i:
            out += "\n\n" if unit.paragraph != units[i - 1].paragraph else " "
        out += unit.text
    return out
