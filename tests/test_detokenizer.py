"""Incremental detokenization with a real byte-level tokenizer (SmolLM2's, built from its GGUF)."""

from __future__ import annotations

import pytest

from brainwork.loader.gguf_reader import GGUFContainer
from brainwork.tokenizer.detokenizer import IncrementalDetokenizer
from brainwork.tokenizer.tokenizer import Tokenizer

TEXTS = [
    "héllo wörld: naïve café",
    "日本語のテキストと中文",
    "emoji 🎉🚀 and flags 🇫🇷 and a family 👨‍👩‍👧",
    "math ∑ x² ≤ ∞ — «quotes»",
]


@pytest.fixture(scope="module")
def tok(smollm2_gguf: str) -> Tokenizer:
    return Tokenizer.from_gguf(GGUFContainer(smollm2_gguf).metadata)


@pytest.mark.parametrize("text", TEXTS)
def test_multibyte_characters_split_across_tokens_stream_whole(tok: Tokenizer, text: str) -> None:
    ids = tok.encode(text, add_special_tokens=False)
    assert len(ids) > len(text.split())  # some characters really are split over several tokens
    detok = IncrementalDetokenizer(tok, stop=[])
    deltas = [detok.push(i) for i in ids] + [detok.flush()]
    assert all("\ufffd" not in d for d in deltas)
    assert "".join(deltas) == tok.decode(ids) == text


def test_a_stop_string_is_never_emitted_in_part(tok: Tokenizer) -> None:
    text = "The answer is 42. END OF ANSWER and more text"
    ids = tok.encode(text, add_special_tokens=False)
    detok = IncrementalDetokenizer(tok, stop=["END OF ANSWER"])
    shown = ""
    for i in ids:
        shown += detok.push(i)
        assert "END" not in shown  # not even the first piece of the stop string
        if detok.stopped_by:
            break
    assert detok.stopped_by == "END OF ANSWER"
    assert shown + detok.flush() == "The answer is 42. "


def test_held_back_text_is_released_when_the_stop_string_does_not_come(tok: Tokenizer) -> None:
    text = "we say EN and stop"
    ids = tok.encode(text, add_special_tokens=False)
    detok = IncrementalDetokenizer(tok, stop=["END"])
    shown = "".join(detok.push(i) for i in ids) + detok.flush()
    assert shown == text and detok.stopped_by is None


def test_skip_special_tokens(tok: Tokenizer) -> None:
    ids = tok.encode("<|im_start|>assistant\nHi there<|im_end|>", add_special_tokens=False)
    shown = {}
    for skip in (True, False):
        detok = IncrementalDetokenizer(tok, stop=[], skip_special_tokens=skip)
        shown[skip] = "".join(detok.push(i) for i in ids) + detok.flush()
    assert shown[True] == "assistant\nHi there"
    assert shown[False] == "<|im_start|>assistant\nHi there<|im_end|>"


def test_long_text_streams_exactly(tok: Tokenizer) -> None:
    """Hundreds of tokens: the windowed decoding joins into the full decode, character for character."""
    text = " ".join(TEXTS * 8) + "\n\tdef f(x):\n        return x ** 2  # done"
    ids = tok.encode(text, add_special_tokens=False)
    assert len(ids) > 300
    detok = IncrementalDetokenizer(tok, stop=[])
    assert "".join(detok.push(i) for i in ids) + detok.flush() == tok.decode(ids) == text
