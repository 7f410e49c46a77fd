"""One sequence of tokens as the scheduler sees it: ids, how many are computed, and its state."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class SequenceStatus(enum.Enum):
    WAITING = "waiting"  # not yet admitted, or preempted and waiting to be recomputed
    RUNNING = "running"
    FINISHED_STOPPED = "stop"  # EOS, a stop token or a stop string
    FINISHED_LENGTH = "length"  # max_tokens or the context window
    FINISHED_ABORTED = "abort"  # cancelled by the caller
    FINISHED_ERROR = "error"  # failed inside the engine; the others go on

    @property
    def finished(self) -> bool:
        return self not in (SequenceStatus.WAITING, SequenceStatus.RUNNING)


@dataclass(eq=False)
class Sequence:
    seq_id: int
    token_ids: list[int]  # prompt, then the generated tokens as they come
    num_prompt_tokens: int
    arrival: int  # admission order; with `priority` decides who goes first and who is preempted
    priority: int = 0  # lower runs sooner (vLLM's convention)
    num_computed: int = 0  # tokens whose keys/values are in the cache
    status: SequenceStatus = SequenceStatus.WAITING
    # n > 1: siblings wait until the first sample's prompt is computed, then share its blocks
    wait_for: Sequence | None = None
    num_preemptions: int = 0
    # prompt logprobs wanted from this position on: rows from here - 1 must be computed, so the
    # prefix cache may serve at most the tokens before that row
    score_from: int | None = None
    extra: dict = field(default_factory=dict)

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def output_ids(self) -> list[int]:
        return self.token_ids[self.num_prompt_tokens :]

    @property
    def num_output_tokens(self) -> int:
        return len(self.token_ids) - self.num_prompt_tokens

    @property
    def order(self) -> tuple[int, int]:
        return (self.priority, self.arrival)

    def ready(self) -> bool:
        parent = self.wait_for
        return parent is None or parent.status.finished or parent.num_computed >= parent.num_prompt_tokens
