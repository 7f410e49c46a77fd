"""Scheduler: continuous batching driven by hand, without a model (sampled tokens are a constant)."""

from __future__ import annotations

import pytest

from brainwork.engine.block_manager import BlockManager
from brainwork.engine.scheduler import Scheduler, SchedulerOutput
from brainwork.engine.sequence import Sequence, SequenceStatus

TOKEN = 7  # every "sampled" token


def make_sched(
    num_blocks: int = 64,
    block_size: int = 16,
    max_num_seqs: int = 8,
    budget: int = 64,
    prefix_caching: bool = True,
) -> Scheduler:
    return Scheduler(BlockManager(num_blocks, block_size, prefix_caching), max_num_seqs, budget)


def make_seq(
    seq_id: int,
    prompt_len: int,
    arrival: int | None = None,
    priority: int = 0,
    prompt: list[int] | None = None,
    wait_for: Sequence | None = None,
) -> Sequence:
    """A sequence whose prompt is unique to its id (so no accidental prefix hits) unless `prompt` is given."""
    ids = list(prompt) if prompt is not None else [1000 * seq_id + i for i in range(prompt_len)]
    return Sequence(seq_id, ids, len(ids), seq_id if arrival is None else arrival, priority=priority, wait_for=wait_for)


def check_schedule(sched: Scheduler, out: SchedulerOutput) -> None:
    """Invariants of one schedule() result, checked before update() moves the sequences on."""
    assert out.num_tokens <= sched.max_num_batched_tokens
    assert len(out.chunks) <= sched.max_num_seqs
    assert len(sched.running) <= sched.max_num_seqs
    ids = [c.seq.seq_id for c in out.chunks]
    assert len(ids) == len(set(ids)), "a sequence scheduled twice in one step"
    bs = sched.bm.block_size
    for c in out.chunks:
        assert c.num_tokens >= 1
        assert c.seq.status is SequenceStatus.RUNNING and c.seq in sched.running
        assert c.start == c.seq.num_computed
        assert c.start + c.num_tokens <= c.seq.num_tokens
        assert len(c.block_table) * bs >= c.start + c.num_tokens
    for seq in out.preempted:
        assert seq.status is SequenceStatus.WAITING and seq in sched.waiting
        assert seq.num_computed == 0 and seq.seq_id not in sched.bm.tables
    assert sched.waiting == sorted(sched.waiting, key=lambda s: s.order)
    sched.bm.check_integrity()


# (seq id, start, num_tokens, samples) of one chunk, read before update(): `samples` compares with the
# sequence's current length, so it turns False once update() has appended the sampled token
Row = tuple[int, int, int, bool]


def _step(sched: Scheduler, token: int) -> tuple[SchedulerOutput, list[Row]]:
    out = sched.schedule()
    check_schedule(sched, out)
    rows = [(c.seq.seq_id, c.start, c.num_tokens, c.samples) for c in out.chunks]
    sched.update(out, {c.seq.seq_id: token for c in out.chunks if c.samples})
    sched.bm.check_integrity()
    return out, rows


def run_step(sched: Scheduler, token: int = TOKEN) -> SchedulerOutput:
    """One engine step: schedule, (pretend to) run the model, feed back a token for each sampling chunk."""
    return _step(sched, token)[0]


def run_step_rows(sched: Scheduler, token: int = TOKEN) -> list[Row]:
    """run_step, returning the chunks as rows taken before update()."""
    return _step(sched, token)[1]


def finish_done(sched: Scheduler, k: int) -> list[Sequence]:
    """Finish every running sequence that has generated `k` tokens (or its own `extra["max_tokens"]`)."""
    done = [s for s in sched.running if s.num_output_tokens >= s.extra.get("max_tokens", k)]
    for seq in done:
        sched.finish(seq, SequenceStatus.FINISHED_LENGTH)
    sched.bm.check_integrity()
    return done


def drive(sched: Scheduler, k: int, max_steps: int = 1000) -> list[SchedulerOutput]:
    """Step until every sequence has finished; each running sequence stops after `k` output tokens."""
    outs: list[SchedulerOutput] = []
    while sched.has_unfinished():
        assert len(outs) < max_steps, "scheduler made no progress"
        outs.append(run_step(sched))
        finish_done(sched, k)
    return outs


def assert_all_free(sched: Scheduler) -> None:
    sched.bm.check_integrity()
    assert not sched.has_unfinished()
    assert sched.bm.tables == {}
    assert sched.bm.num_free_blocks == sched.bm.num_blocks
    assert sched.bm.usage == 0.0


# ---- (a) chunked prefill ---------------------------------------------------------------------------


def test_chunked_prefill_splits_a_long_prompt_by_the_budget() -> None:
    """A 100-token prompt under a budget of 32 runs as chunks 32, 32, 32, 4; only the last one samples."""
    sched = make_sched(num_blocks=16, block_size=16, budget=32)
    seq = make_seq(1, 100)
    sched.add(seq)
    chunks: list[Row] = []
    tables: list[int] = []
    for _ in range(4):
        rows = run_step_rows(sched)
        assert len(rows) == 1
        chunks += rows
        tables.append(len(sched.bm.block_table(1)))
    assert chunks == [(1, 0, 32, False), (1, 32, 32, False), (1, 64, 32, False), (1, 96, 4, True)]
    assert tables == [2, 4, 6, 7]  # blocks are allocated as the chunks need them
    assert seq.num_computed == 100
    assert seq.output_ids == [TOKEN]
    assert run_step_rows(sched) == [(1, 100, 1, True)]  # then plain decoding
    sched.finish(seq, SequenceStatus.FINISHED_LENGTH)
    assert_all_free(sched)


def test_prompt_that_fits_the_budget_is_one_chunk() -> None:
    """A prompt within the budget is computed in one step, which also samples the first token."""
    sched = make_sched(budget=64)
    seq = make_seq(1, 64)
    sched.add(seq)
    assert run_step_rows(sched) == [(1, 0, 64, True)]
    assert seq.num_output_tokens == 1
    drive(sched, k=3)
    assert seq.num_output_tokens == 3
    assert_all_free(sched)


# ---- (b) decodes first ---------------------------------------------------------------------------------


def test_decodes_go_first_and_are_not_starved_by_a_long_prompt() -> None:
    """With 3 decoders running, every step of a 200-token prefill under budget 64 still runs all 3 decodes."""
    sched = make_sched(num_blocks=64, block_size=16, budget=64)
    decoders = [make_seq(i, 4) for i in range(3)]
    for s in decoders:
        sched.add(s)
    run_step(sched)
    assert all(s.num_output_tokens == 1 for s in decoders)
    long = make_seq(10, 200)
    sched.add(long)
    prefill_chunks: list[int] = []
    while long.num_computed < long.num_prompt_tokens:
        rows = run_step_rows(sched)
        assert rows[:3] == [(s.seq_id, s.num_computed - 1, 1, True) for s in decoders]
        assert [r[0] for r in rows[3:]] == [long.seq_id]
        prefill_chunks.append(rows[3][2])
        assert sum(r[2] for r in rows) == 3 + prefill_chunks[-1] <= 64
    assert prefill_chunks == [61, 61, 61, 17]
    assert all(s.num_output_tokens == 5 for s in decoders)
    assert long.num_output_tokens == 1
    drive(sched, k=8)
    assert all(s.num_output_tokens == 8 for s in [*decoders, long])
    assert_all_free(sched)


# ---- (c) limits ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_blocks", [200, 24])
def test_budget_and_max_num_seqs_hold_every_step(num_blocks: int) -> None:
    """A mixed workload never exceeds the token budget or the sequence limit, and every sequence finishes.

    With 24 blocks the same workload also goes through preemptions.
    """
    sched = make_sched(num_blocks=num_blocks, block_size=8, max_num_seqs=4, budget=48)
    lengths = [5, 40, 17, 90, 3, 64, 33, 8, 120, 1, 47, 16]
    seqs = [make_seq(i, n) for i, n in enumerate(lengths)]
    for i, s in enumerate(seqs):
        s.extra["max_tokens"] = 1 + (i * 7) % 13
        sched.add(s)
    outs = drive(sched, k=0)
    assert all(o.chunks for o in outs), "a step with work left scheduled nothing"
    assert max(len(o.chunks) for o in outs) == 4
    assert max(o.num_tokens for o in outs) == 48
    assert all(s.status is SequenceStatus.FINISHED_LENGTH for s in seqs)
    assert [s.num_output_tokens for s in seqs] == [s.extra["max_tokens"] for s in seqs]
    assert all(s.output_ids == [TOKEN] * s.num_output_tokens for s in seqs)
    if num_blocks == 24:
        assert sched.num_preemptions > 0
    assert sched.num_preemptions == sum(s.num_preemptions for s in seqs)
    assert_all_free(sched)


# ---- (d) admission order -----------------------------------------------------------------------------


def admission_order(outs: list[SchedulerOutput]) -> list[int]:
    order: list[int] = []
    for out in outs:
        order.extend(c.seq.seq_id for c in out.chunks if c.seq.seq_id not in order)
    return order


def test_admission_is_fifo_by_arrival_not_by_add_order() -> None:
    """Waiting sequences are admitted in arrival order, whatever order they were added in."""
    sched = make_sched(max_num_seqs=1, budget=64)
    for seq_id, arrival in [(1, 2), (2, 0), (3, 3), (4, 1)]:
        sched.add(make_seq(seq_id, 10, arrival=arrival))
    outs = drive(sched, k=2)
    assert admission_order(outs) == [2, 4, 1, 3]
    assert all(len(o.chunks) == 1 for o in outs)
    assert_all_free(sched)


def test_lower_priority_value_is_admitted_first() -> None:
    """`priority` ranks before arrival: lower values go first, ties in arrival order."""
    sched = make_sched(max_num_seqs=1, budget=64)
    sched.add(make_seq(1, 10, arrival=0, priority=1))
    sched.add(make_seq(2, 10, arrival=1))
    sched.add(make_seq(3, 10, arrival=2))
    sched.add(make_seq(4, 10, arrival=3, priority=-1))
    first = run_step(sched)
    assert [c.seq.seq_id for c in first.chunks] == [4]
    # a later high-priority arrival overtakes those already waiting
    sched.add(make_seq(5, 10, arrival=4, priority=-1))
    outs = [first, *drive(sched, k=2)]
    assert admission_order(outs) == [4, 5, 2, 3, 1]
    assert_all_free(sched)


def test_admission_does_not_let_a_later_sequence_jump_a_blocked_one() -> None:
    """When the head of the queue does not fit in the free blocks, smaller later ones wait behind it."""
    sched = make_sched(num_blocks=8, block_size=4, max_num_seqs=4, budget=64)
    hog = make_seq(1, 20)  # 5 blocks, then 6 once it decodes: 2 left
    big, small = make_seq(2, 16), make_seq(3, 2)  # 4 blocks (does not fit), 1 block (would fit)
    sched.add(hog)
    run_step(sched)
    sched.add(big)
    sched.add(small)
    out = run_step(sched)
    assert [c.seq for c in out.chunks] == [hog]
    assert big.status is SequenceStatus.WAITING and small.status is SequenceStatus.WAITING
    assert big.num_computed == 0 and 2 not in sched.bm.tables  # the refused lookup gave its blocks back
    assert sched.bm.counters.queries == 20  # a refused admission is not counted as a cache query
    sched.finish(hog, SequenceStatus.FINISHED_LENGTH)
    out = run_step(sched)
    assert [c.seq for c in out.chunks] == [big, small]
    drive(sched, k=2)
    assert_all_free(sched)


# ---- (e) preemption -------------------------------------------------------------------------------------


def test_preemption_recomputes_the_latest_sequence_and_everyone_finishes() -> None:
    """When decodes run out of blocks the latest running sequence is preempted, requeued and later completed."""
    sched = make_sched(num_blocks=6, block_size=4, max_num_seqs=3, budget=64)
    a, b, c = make_seq(1, 4), make_seq(2, 4), make_seq(3, 4)
    for s in (a, b, c):
        sched.add(s)
    outs: list[SchedulerOutput] = []
    while not sched.num_preemptions:
        assert len(outs) < 20
        outs.append(run_step(sched))
        finish_done(sched, 10)
    out, preempted_at = outs[-1], len(outs)
    assert out.preempted == [c]
    assert [ch.seq for ch in out.chunks] == [a, b]
    assert c.status is SequenceStatus.WAITING and c in sched.waiting and c not in sched.running
    assert c.num_computed == 0 and c.num_preemptions == 1 and sched.num_preemptions == 1
    outputs_before = c.num_output_tokens
    assert outputs_before > 0  # its generated tokens are kept, to be recomputed
    outs += drive(sched, k=10)
    assert all(s.status is SequenceStatus.FINISHED_LENGTH for s in (a, b, c))
    assert all(s.num_output_tokens == 10 for s in (a, b, c))
    resumed = [ch for o in outs[preempted_at:] for ch in o.chunks if ch.seq is c]
    assert resumed[0].start % sched.bm.block_size == 0 and resumed[0].num_tokens > 1  # recomputed
    assert resumed[-1].start + resumed[-1].num_tokens == c.num_tokens - 1  # ran to its last sample
    assert a.num_preemptions == 0  # the earliest sequence is never the victim
    assert sched.num_preemptions == a.num_preemptions + b.num_preemptions + c.num_preemptions
    assert_all_free(sched)


def test_preemption_victim_is_the_lowest_priority_and_requeued_at_the_head() -> None:
    """A high-priority late arrival is kept; the lowest-priority running sequence goes back first in line."""
    sched = make_sched(num_blocks=6, block_size=4, max_num_seqs=3, budget=64)
    a, b, c = make_seq(1, 4), make_seq(2, 4), make_seq(3, 4, priority=-1)
    d = make_seq(4, 4)  # waits for a free slot
    for s in (a, b, c, d):
        sched.add(s)
    out = SchedulerOutput()
    while not sched.num_preemptions:
        out = run_step(sched)
        finish_done(sched, 10)
    assert out.preempted == [b]
    assert d.status is SequenceStatus.WAITING  # nothing is admitted in a step that preempts
    assert sched.waiting == [b, d]
    assert c in sched.running and c.num_preemptions == 0
    drive(sched, k=10)
    assert all(s.num_output_tokens == 10 for s in (a, b, c, d))
    assert c.num_preemptions == 0
    assert_all_free(sched)


def test_no_admission_in_a_step_that_preempts() -> None:
    """A step that preempted admits nobody, even a waiting high-priority sequence that would fit."""
    sched = make_sched(num_blocks=5, block_size=4, max_num_seqs=2, budget=64)
    a, b = make_seq(1, 4), make_seq(2, 4)
    sched.add(a)
    sched.add(b)
    run_step(sched)
    urgent = make_seq(3, 2, priority=-1)  # 1 block; waits only because both slots are taken
    sched.add(urgent)
    out = SchedulerOutput()
    while not out.preempted:
        assert a.num_output_tokens < 10
        assert urgent.status is SequenceStatus.WAITING
        out = run_step(sched)
    assert out.preempted == [b]
    assert len(sched.running) < sched.max_num_seqs and sched.bm.num_free_blocks >= 1  # urgent would fit
    assert urgent not in [ch.seq for ch in out.chunks]
    assert sched.waiting == [urgent, b]
    out = run_step(sched)
    assert urgent in [ch.seq for ch in out.chunks]
    drive(sched, k=10)
    assert all(s.num_output_tokens == 10 for s in (a, b, urgent))
    assert_all_free(sched)


def test_a_sequence_preempts_itself_when_it_is_the_lowest() -> None:
    """If the sequence that needs a block ranks lowest, it is the one preempted, and it is not scheduled."""
    sched = make_sched(num_blocks=3, block_size=4, max_num_seqs=2, budget=64)
    a, b = make_seq(1, 3), make_seq(2, 8)  # a: 1 block, b: 2 blocks, pool full after admission
    sched.add(a)
    sched.add(b)
    run_step(sched)
    assert sched.bm.num_free_blocks == 0
    out = run_step(sched)  # a fits its block; b needs a third block, and only b itself is left to preempt
    assert out.preempted == [b]
    assert [ch.seq for ch in out.chunks] == [a]
    assert b.num_computed == 0 and b.num_output_tokens == 1
    drive(sched, k=4)
    assert a.num_output_tokens == 4 and b.num_output_tokens == 4
    assert_all_free(sched)


# ---- (f) prefix caching -----------------------------------------------------------------------------------


@pytest.mark.parametrize("first_finished", [False, True])
def test_prefix_cache_hit_through_the_scheduler(first_finished: bool) -> None:
    """A second sequence with the same 64-token prompt starts with 48 tokens computed (block 16).

    The hit works both while the first still holds the blocks and after it finished and freed them.
    """
    sched = make_sched(num_blocks=32, block_size=16, budget=128)
    prompt = list(range(500, 564))
    first = make_seq(1, 0, prompt=prompt)
    sched.add(first)
    run_step(sched)
    assert first.num_computed == 64
    if first_finished:
        run_step(sched)
        sched.finish(first, SequenceStatus.FINISHED_LENGTH)
    first_blocks = list(sched.bm.tables.get(1, ())) or None
    second = make_seq(2, 0, prompt=prompt)
    sched.add(second)
    out = sched.schedule()
    check_schedule(sched, out)
    chunk = next(ch for ch in out.chunks if ch.seq is second)
    assert chunk.start == second.num_computed == 48
    assert chunk.num_tokens == 16 and chunk.samples
    assert sched.bm.counters.hits == 48
    assert sched.bm.counters.queries == 128
    if first_blocks is not None:
        assert sched.bm.block_table(2)[:3] == first_blocks[:3]
        assert all(sched.bm.ref_counts[blk] == 2 for blk in first_blocks[:3])
    sched.update(out, {ch.seq.seq_id: TOKEN for ch in out.chunks if ch.samples})
    sched.bm.check_integrity()
    drive(sched, k=3)
    assert second.num_output_tokens == 3
    assert_all_free(sched)


def test_no_prefix_hit_when_caching_is_disabled() -> None:
    """With prefix caching off, the same prompt is recomputed from position 0 and nothing is counted."""
    sched = make_sched(num_blocks=32, block_size=16, budget=128, prefix_caching=False)
    prompt = list(range(500, 564))
    sched.add(make_seq(1, 0, prompt=prompt))
    run_step(sched)
    second = make_seq(2, 0, prompt=prompt)
    sched.add(second)
    out = run_step(sched)
    assert next(ch for ch in out.chunks if ch.seq is second).start == 0
    assert (sched.bm.counters.queries, sched.bm.counters.hits) == (0, 0)
    drive(sched, k=2)
    assert_all_free(sched)


# ---- (g) n > 1 siblings ---------------------------------------------------------------------------------


@pytest.mark.parametrize("budget", [33, 48, 128])
def test_sibling_waits_for_the_first_prompt_then_hits_the_cache(budget: int) -> None:
    """A `wait_for` sibling is skipped (without blocking later arrivals) until its first's prompt is computed.

    Once admitted, it shares the first's full prompt blocks: 96 of the 100 prompt tokens hit. With budget 33
    the first's prompt is at 99 of 100 tokens for a whole step, during which the sibling still waits.
    """
    sched = make_sched(num_blocks=32, block_size=16, max_num_seqs=4, budget=budget)
    prompt = list(range(300, 400))
    first = make_seq(1, 0, arrival=0, prompt=prompt)
    sib = make_seq(2, 0, arrival=0, prompt=prompt, wait_for=first)
    other = make_seq(3, 8, arrival=1)
    for s in (first, sib, other):
        sched.add(s)
    steps = 0
    while first.num_computed < first.num_prompt_tokens:
        out = run_step(sched)
        steps += 1
        assert sib not in [ch.seq for ch in out.chunks]
        assert sib.status is SequenceStatus.WAITING and 2 not in sched.bm.tables
    assert other.status is SequenceStatus.RUNNING  # admitted past the sibling that was not ready
    assert steps == {33: 4, 48: 3, 128: 1}[budget]
    assert (2, 96, 4, True) in run_step_rows(sched)
    assert sched.bm.block_table(2)[:6] == sched.bm.block_table(1)[:6]
    assert sched.bm.counters.hits == 96
    assert sched.bm.counters.queries == 100 + 8 + 100
    drive(sched, k=3)
    assert [s.num_output_tokens for s in (first, sib, other)] == [3, 3, 3]
    assert_all_free(sched)


def test_sibling_of_an_aborted_first_is_admitted_and_reuses_its_computed_blocks() -> None:
    """If the first sample is aborted mid-prefill, its sibling stops waiting and hits what was computed."""
    sched = make_sched(num_blocks=32, block_size=16, budget=32)
    prompt = list(range(300, 400))
    first = make_seq(1, 0, arrival=0, prompt=prompt)
    sib = make_seq(2, 0, arrival=0, prompt=prompt, wait_for=first)
    sched.add(first)
    sched.add(sib)
    run_step(sched)
    run_step(sched)
    assert first.num_computed == 64 and sib.status is SequenceStatus.WAITING
    sched.finish(first, SequenceStatus.FINISHED_ABORTED)
    assert sib.ready()
    out = run_step(sched)
    assert [(ch.seq, ch.start) for ch in out.chunks] == [(sib, 64)]
    drive(sched, k=2)
    assert sib.num_output_tokens == 2
    assert_all_free(sched)


# ---- (h) aborts -------------------------------------------------------------------------------------------


def test_abort_mid_prefill_frees_blocks_at_once() -> None:
    """Aborting a sequence halfway through its chunked prefill returns its blocks before the next step."""
    sched = make_sched(num_blocks=16, block_size=16, budget=32)
    seq = make_seq(1, 100)
    sched.add(seq)
    run_step(sched)
    run_step(sched)
    assert sched.bm.num_free_blocks == 12
    sched.finish(seq, SequenceStatus.FINISHED_ABORTED)
    assert seq.status is SequenceStatus.FINISHED_ABORTED
    assert sched.bm.num_free_blocks == 16
    assert seq not in sched.running
    out = run_step(sched)
    assert out.chunks == []
    assert_all_free(sched)


def test_abort_mid_decode_and_while_waiting_frees_blocks_at_once() -> None:
    """Aborting a decoding sequence frees its blocks; aborting a waiting one drops it from the queue."""
    sched = make_sched(num_blocks=16, block_size=4, max_num_seqs=1, budget=64)
    running, waiting = make_seq(1, 6), make_seq(2, 6)
    sched.add(running)
    sched.add(waiting)
    for _ in range(4):
        run_step(sched)
    assert running.num_output_tokens == 4 and waiting.status is SequenceStatus.WAITING
    assert sched.bm.num_free_blocks == 13  # 9 computed tokens = 3 blocks
    sched.finish(waiting, SequenceStatus.FINISHED_ABORTED)
    assert waiting not in sched.waiting
    sched.finish(running, SequenceStatus.FINISHED_ABORTED)
    assert sched.bm.num_free_blocks == 16
    assert not sched.has_unfinished()
    assert run_step(sched).chunks == []
    assert_all_free(sched)


@pytest.mark.parametrize("mid", ["prefill", "decode"])
def test_update_ignores_a_sequence_finished_while_the_step_ran(mid: str) -> None:
    """A chunk whose sequence was aborted between schedule() and update() changes nothing for it."""
    sched = make_sched(num_blocks=16, block_size=4, budget=8)
    other, victim = make_seq(2, 3, arrival=0), make_seq(1, 20 if mid == "prefill" else 3, arrival=1)
    sched.add(victim)
    sched.add(other)
    if mid == "decode":
        run_step(sched)
    out = sched.schedule()
    check_schedule(sched, out)
    assert {ch.seq for ch in out.chunks} == {victim, other}
    before = (list(victim.token_ids), victim.num_computed)
    sched.finish(victim, SequenceStatus.FINISHED_ABORTED)
    assert sched.bm.num_free_blocks == 16 - len(sched.bm.block_table(2))
    sampled = {ch.seq.seq_id: TOKEN for ch in out.chunks}  # even if the model returned a token for it
    sched.update(out, sampled)
    assert (victim.token_ids, victim.num_computed) == before
    assert victim.status is SequenceStatus.FINISHED_ABORTED
    assert 1 not in sched.bm.tables
    assert other.num_computed > 0  # the rest of the batch is still updated
    sched.bm.check_integrity()
    drive(sched, k=2)
    assert_all_free(sched)


def test_prompt_tail_runs_as_its_own_chunk() -> None:
    """`prompt_tail` (the llama.cpp server's split for sliding-window models under ggml
    arithmetic): a prompt's last 4 tokens run one step after the rest, also when the budget
    chunks the prompt; prompts of 4 tokens or fewer and decodes are not split."""
    sched = make_sched(budget=10)
    sched.prompt_tail = 4
    long, short = make_seq(0, 17), make_seq(1, 3)
    sched.add(long)
    sched.add(short)
    seen: dict[int, list[tuple[int, int]]] = {0: [], 1: []}
    for _ in range(6):
        out = sched.schedule()
        check_schedule(sched, out)
        for c in out.chunks:
            seen[c.seq.seq_id].append((c.start, c.num_tokens))
        sched.update(out, {c.seq.seq_id: TOKEN for c in out.chunks if c.samples})
    assert seen[0][:3] == [(0, 10), (10, 3), (13, 4)]
    assert seen[0][3:] == [(17, 1), (18, 1), (19, 1)]
    assert seen[1][0] == (0, 3)
