"""Continuous batching: which tokens of which sequences the next forward pass computes.

Every step has a token budget. Running sequences that decode (one token each) go first, so a
long prompt never stalls them; then running prompts continue in chunks (chunked prefill); then
waiting sequences are admitted in (priority, arrival) order while budget, sequence slots and KV
blocks last. When a running sequence needs a block and none is free, the lowest-priority
running sequence not yet scheduled this step is preempted: its blocks are freed and it goes
back to the head of the queue to be recomputed later (its computed prefix usually survives in
the prefix cache). Ints and lists only.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from brainwork.engine.block_manager import BlockManager
from brainwork.engine.sequence import Sequence, SequenceStatus


@dataclass
class ScheduledChunk:
    seq: Sequence
    start: int  # first position computed this step (= seq.num_computed when scheduled)
    num_tokens: int
    block_table: list[int]

    @property
    def samples(self) -> bool:
        """True when the chunk reaches the last known token, so its logits give the next one."""
        return self.start + self.num_tokens == self.seq.num_tokens


@dataclass
class SchedulerOutput:
    chunks: list[ScheduledChunk] = field(default_factory=list)
    preempted: list[Sequence] = field(default_factory=list)

    @property
    def num_tokens(self) -> int:
        return sum(c.num_tokens for c in self.chunks)


class Scheduler:
    def __init__(self, block_manager: BlockManager, max_num_seqs: int, max_num_batched_tokens: int) -> None:
        if max_num_seqs < 1 or max_num_batched_tokens < 1:
            raise ValueError("max_num_seqs and max_num_batched_tokens must be >= 1")
        self.bm = block_manager
        self.max_num_seqs, self.max_num_batched_tokens = max_num_seqs, max_num_batched_tokens
        self.waiting: list[Sequence] = []  # kept sorted by (priority, arrival)
        self.running: list[Sequence] = []
        self.num_preemptions = 0
        # > 0: a prompt's last `prompt_tail` tokens run as a chunk of their own. The llama.cpp
        # server does this (4 tokens) for sliding-window models, to checkpoint its context before
        # them; llama.cpp's arithmetic (`numerics`) depends on the chunk, so the engine copies it.
        self.prompt_tail = 0

    # ---- queue --------------------------------------------------------------------------------
    def add(self, seq: Sequence) -> None:
        seq.status = SequenceStatus.WAITING
        bisect.insort(self.waiting, seq, key=lambda s: s.order)

    def finish(self, seq: Sequence, status: SequenceStatus) -> None:
        """End a sequence (done, aborted or failed) and free its blocks at once."""
        if seq in self.running:
            self.running.remove(seq)
        elif seq in self.waiting:
            self.waiting.remove(seq)
        seq.status = status
        self.bm.free(seq.seq_id)

    def has_unfinished(self) -> bool:
        return bool(self.waiting or self.running)

    # ---- one step -----------------------------------------------------------------------------
    def schedule(self) -> SchedulerOutput:
        out = SchedulerOutput()
        budget = self.max_num_batched_tokens
        scheduled: set[int] = set()
        decodes = [s for s in self.running if s.num_tokens - s.num_computed == 1]
        prefills = [s for s in self.running if s.num_tokens - s.num_computed > 1]
        for seq in decodes + prefills:
            if budget == 0:
                break
            if seq.status is not SequenceStatus.RUNNING:  # preempted earlier in this loop
                continue
            n = self._chunk_len(seq, budget)
            if not self._allocate_or_preempt(seq, n, scheduled, out):
                continue
            out.chunks.append(ScheduledChunk(seq, seq.num_computed, n, self.bm.block_table(seq.seq_id)))
            scheduled.add(seq.seq_id)
            budget -= n
        if not out.preempted:  # admitting while preempting would only thrash
            budget = self._admit(budget, out)
        return out

    def _chunk_len(self, seq: Sequence, budget: int) -> int:
        n = min(seq.num_tokens - seq.num_computed, budget)
        cut = seq.num_tokens - self.prompt_tail
        if self.prompt_tail and seq.num_computed < cut < seq.num_computed + n:
            n = cut - seq.num_computed
        return n

    def _allocate_or_preempt(self, seq: Sequence, n: int, scheduled: set[int], out: SchedulerOutput) -> bool:
        while not self.bm.allocate(seq.seq_id, seq.num_computed + n):
            candidates = [s for s in self.running if s.seq_id not in scheduled]
            victim = max(candidates, key=lambda s: s.order)
            self._preempt(victim, out)
            if victim is seq:
                return False
        return True

    def _preempt(self, seq: Sequence, out: SchedulerOutput) -> None:
        self.running.remove(seq)
        self.bm.free(seq.seq_id)
        seq.num_computed = 0
        seq.num_preemptions += 1
        self.num_preemptions += 1
        out.preempted.append(seq)
        self.add(seq)

    def _admit(self, budget: int, out: SchedulerOutput) -> int:
        for seq in list(self.waiting):
            if budget == 0 or len(self.running) >= self.max_num_seqs:
                break
            if not seq.ready():
                continue
            cacheable = seq.token_ids if seq.score_from is None else seq.token_ids[: seq.score_from]
            seq.num_computed = self.bm.lookup_prefix(seq.seq_id, cacheable)
            n = self._chunk_len(seq, budget)
            if not self.bm.allocate(seq.seq_id, seq.num_computed + n):
                self.bm.free(seq.seq_id)  # give back the prefix blocks; FIFO: nobody jumps the queue
                seq.num_computed = 0
                break
            self.bm.record_lookup(seq.num_tokens, seq.num_computed)
            self.waiting.remove(seq)
            seq.status = SequenceStatus.RUNNING
            self.running.append(seq)
            out.chunks.append(ScheduledChunk(seq, seq.num_computed, n, self.bm.block_table(seq.seq_id)))
            budget -= n
        self.running.sort(key=lambda s: s.order)
        return budget

    def update(self, out: SchedulerOutput, sampled: dict[int, int]) -> None:
        """After the forward pass: advance computed counts, register full blocks, append samples."""
        for chunk in out.chunks:
            seq = chunk.seq
            if seq.status is not SequenceStatus.RUNNING:
                continue  # aborted while the step ran
            seq.num_computed = chunk.start + chunk.num_tokens
            self.bm.commit(seq.seq_id, seq.token_ids, seq.num_computed)
            token = sampled.get(seq.seq_id)
            if token is not None:
                seq.token_ids.append(token)
