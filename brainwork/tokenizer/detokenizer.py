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
        self.emitted = 0  # characters of `text` already handed out
        self.stopped_by: str | None = None

    def push(self, token_id: int, check_stop: bool = True) -> str:
        """`check_stop=False` while min_tokens is not reached: stop strings may not end it yet."""
        self.ids.append(token_id)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=self.skip_special)
        if text.endswith("\ufffd"):
            return ""
        self.text = text
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
