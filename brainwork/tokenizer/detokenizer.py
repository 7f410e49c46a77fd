"""Incremental detokenization: text deltas as tokens arrive, never half a character or stop string."""

from __future__ import annotations

from brainwork.tokenizer.tokenizer import Tokenizer


class IncrementalDetokenizer:
    """Feed token ids one at a time; `push` returns the text that is now safe to show.

    Byte-level tokens can split one UTF-8 character across tokens: text ending in U+FFFD is
    held back until the next token completes it. Text that could still grow into a stop string
    is held back too, and a completed stop string ends the output before it.
    """

    def __init__(self, tokenizer: Tokenizer, stop: list[str], skip_special_tokens: bool = True) -> None:
        self.tokenizer = tokenizer
        self.stop = stop
        self.skip_special = skip_special_tokens
        self.ids: list[int] = []
        self.text = ""  # decoded text of all ids, complete characters only
        # only a short window of ids is decoded per push (decoding all ids every time is O(n^2)):
        # text of ids[prefix:read] is known, ids[read:] are new (vLLM's offsets)
        self._prefix, self._read = 0, 0
        self.emitted = 0  # characters of `text` already handed out
        self.stopped_by: str | None = None

    def push(self, token_id: int, check_stop: bool = True) -> str:
        """`check_stop=False` while min_tokens is not reached: stop strings may not end it yet."""
        self.ids.append(token_id)
        known = self.tokenizer.decode(self.ids[self._prefix : self._read], skip_special_tokens=self.skip_special)
        window = self.tokenizer.decode(self.ids[self._prefix :], skip_special_tokens=self.skip_special)
        if len(window) <= len(known) or window.endswith("\ufffd"):
            return ""  # nothing new yet, or half a UTF-8 character: wait for the next token
        self.text += window[len(known) :]
        self._prefix, self._read = self._read, len(self.ids)
        text = self.text
        for s in self.stop if check_stop else ():
            at = text.find(s, max(0, self.emitted - len(s) + 1))
            if at != -1:
                self.stopped_by = s
                self.text = text[:at]
                return self._take(len(self.text))
        hold = max((_partial_suffix(text, s) for s in self.stop), default=0)
        return self._take(len(text) - hold)

    def flush(self) -> str:
        """At the end of generation: whatever was held back for a stop string that never came."""
        return self._take(len(self.text)) if self.stopped_by is None else ""

    def _take(self, upto: int) -> str:
        if upto <= self.emitted:
            return ""
        out = self.text[self.emitted : upto]
        self.emitted = upto
        return out


def _partial_suffix(text: str, stop: str) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of `stop`."""
    for n in range(min(len(stop) - 1, len(text)), 0, -1):
        if text.endswith(stop[:n]):
            return n
    return 0
