"""BlockManager: paged allocation, reference counts, automatic prefix caching and LRU eviction (pure Python)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from brainwork.engine.block_manager import BlockManager

BS = 4  # block size used throughout: small, so that scenarios stay readable


def tokens(n: int, base: int = 0) -> list[int]:
    """`n` distinct token ids starting at `base` (different bases never share a block)."""
    return list(range(base, base + n))


def computed(bm: BlockManager, seq_id: int, token_ids: list[int]) -> list[int]:
    """Admit a sequence the way the scheduler does: look up its prefix, allocate the rest, compute, commit."""
    hit = bm.lookup_prefix(seq_id, token_ids)
    assert bm.allocate(seq_id, len(token_ids))
    bm.commit(seq_id, token_ids, len(token_ids))
    bm.record_lookup(len(token_ids), hit)
    return bm.block_table(seq_id)


# ---- allocation --------------------------------------------------------------------------------


def test_constructor_rejects_empty_pool() -> None:
    """A pool needs at least one block of at least one token."""
    with pytest.raises(ValueError):
        BlockManager(0, BS)
    with pytest.raises(ValueError):
        BlockManager(4, 0)


def test_allocate_grows_table_one_block_per_block_size_tokens() -> None:
    """A table holds ceil(tokens / block_size) blocks and only grows when a new block is needed."""
    bm = BlockManager(8, BS)
    assert bm.blocks_needed(0) == 0 and bm.blocks_needed(1) == 1 and bm.blocks_needed(4) == 1
    assert bm.blocks_needed(5) == 2
    assert bm.allocate(1, 1)
    assert len(bm.block_table(1)) == 1
    first = list(bm.block_table(1))
    for n, want in [(4, 1), (5, 2), (8, 2), (9, 3), (12, 3)]:
        assert bm.allocate(1, n)
        assert len(bm.block_table(1)) == want
        assert bm.block_table(1)[:1] == first  # growth appends, never moves existing blocks
    assert bm.allocate(1, 3)  # asking for fewer tokens than held neither fails nor shrinks
    assert len(bm.block_table(1)) == 3
    assert bm.num_free_blocks == 5
    assert all(bm.ref_counts[b] == 1 for b in bm.block_table(1))
    bm.check_integrity()


def test_allocate_refuses_without_change_when_blocks_run_out() -> None:
    """When the pool cannot cover the growth, allocate returns False and leaves every table as it was."""
    bm = BlockManager(4, BS)
    assert bm.allocate(1, 3 * BS)
    assert bm.allocate(2, BS)
    table1, table2 = list(bm.block_table(1)), list(bm.block_table(2))
    assert bm.num_free_blocks == 0
    assert not bm.can_allocate(1, 3 * BS + 1)
    assert not bm.allocate(1, 3 * BS + 1)
    assert not bm.allocate(3, 1)
    assert bm.block_table(1) == table1 and bm.block_table(2) == table2
    assert bm.num_free_blocks == 0
    # a refused partial request does not take the blocks that are there either
    bm.free(2)
    assert bm.num_free_blocks == 1
    assert not bm.allocate(1, 5 * BS)
    assert bm.block_table(1) == table1
    assert bm.num_free_blocks == 1
    assert bm.can_allocate(1, 4 * BS) and bm.allocate(1, 4 * BS)
    assert bm.num_free_blocks == 0
    bm.check_integrity()


def test_free_returns_blocks_and_ignores_unknown_sequences() -> None:
    """Freeing a sequence gives all its blocks back; freeing twice or an unknown id changes nothing."""
    bm = BlockManager(6, BS)
    assert bm.allocate(1, 10) and bm.allocate(2, 5)
    assert bm.num_free_blocks == 1
    bm.free(1)
    assert bm.num_free_blocks == 4
    assert 1 not in bm.tables and 1 not in bm.hashes
    bm.free(1)
    bm.free(99)
    assert bm.num_free_blocks == 4
    bm.free(2)
    assert bm.num_free_blocks == 6
    assert bm.ref_counts == [0] * 6
    bm.check_integrity()


def test_usage_counts_held_blocks_only() -> None:
    """usage is the fraction of blocks held by sequences; cached blocks nobody holds count as free."""
    bm = BlockManager(4, BS)
    assert bm.usage == 0.0
    computed(bm, 1, tokens(2 * BS))
    assert bm.usage == pytest.approx(0.5)
    assert bm.allocate(2, 2 * BS)
    assert bm.usage == pytest.approx(1.0)
    bm.free(1)  # its blocks stay cached but are free
    assert len(bm.cached) == 2
    assert bm.usage == pytest.approx(0.5)
    bm.free(2)
    assert bm.usage == 0.0
    bm.check_integrity()


# ---- prefix caching ---------------------------------------------------------------------------------


def test_lookup_hits_only_after_commit() -> None:
    """Blocks are not found while they are only allocated; after commit a new sequence shares them."""
    bm = BlockManager(8, BS)
    prompt = tokens(2 * BS + 1)
    assert bm.lookup_prefix(1, prompt) == 0
    assert bm.allocate(1, len(prompt))
    assert bm.lookup_prefix(2, prompt) == 0  # allocated, not computed: no hit
    bm.free(2)
    bm.commit(1, prompt, len(prompt))
    assert bm.lookup_prefix(3, prompt) == 2 * BS
    assert bm.block_table(3) == bm.block_table(1)[:2]
    bm.check_integrity()


def test_commit_registers_full_blocks_only() -> None:
    """A partly computed or partly filled block is never cached; committing more later extends the chain."""
    bm = BlockManager(8, BS)
    prompt = tokens(3 * BS + 2)
    assert bm.lookup_prefix(1, prompt) == 0
    assert bm.allocate(1, len(prompt))
    bm.commit(1, prompt, BS + 3)  # one full block computed, the second only partly
    assert len(bm.cached) == 1
    assert bm.lookup_prefix(2, prompt) == BS
    bm.free(2)
    bm.commit(1, prompt, len(prompt))  # three full blocks now; the fourth holds 2 of 4 tokens
    assert len(bm.cached) == 3
    assert len(bm.hashes[1]) == 3
    assert bm.lookup_prefix(3, [*prompt, 999]) == 3 * BS
    bm.check_integrity()


def test_lookup_always_leaves_one_token_to_compute() -> None:
    """A prompt of exactly N full cached blocks hits N-1 of them; one more token lets it hit all N."""
    bm = BlockManager(12, BS)
    prompt = tokens(3 * BS)
    computed(bm, 1, prompt)
    assert len(bm.cached) == 3
    assert bm.lookup_prefix(2, prompt) == 2 * BS
    assert bm.lookup_prefix(3, [*prompt, 777]) == 3 * BS
    assert bm.lookup_prefix(4, prompt[:BS]) == 0  # one block: nothing may be skipped
    assert bm.lookup_prefix(5, prompt[: BS + 1]) == BS
    assert bm.lookup_prefix(6, prompt[:1]) == 0
    assert bm.lookup_prefix(7, []) == 0
    bm.check_integrity()


def test_lookup_returns_longest_prefix_and_stops_at_first_mismatch() -> None:
    """The hash is chained: a block equal in content but after a different prefix does not hit."""
    bm = BlockManager(16, BS)
    a, b, c = tokens(BS, 100), tokens(BS, 200), tokens(BS, 300)
    computed(bm, 1, a + b + c + [1])
    assert bm.lookup_prefix(2, a + b + tokens(BS, 400) + [1]) == 2 * BS  # diverges in block 3
    assert bm.lookup_prefix(3, a + tokens(BS, 500) + c + [1]) == BS  # block 3 equal, but after another block 2
    assert bm.lookup_prefix(4, b + c + [1]) == 0  # same blocks at other positions
    assert bm.lookup_prefix(5, [*a[:-1], 0, *b, *c, 1]) == 0  # first block differs by one token
    bm.check_integrity()


def test_lookup_twice_for_one_sequence_is_an_error() -> None:
    """A sequence that already holds blocks cannot look up a prefix again (it would leak them)."""
    bm = BlockManager(4, BS)
    bm.lookup_prefix(1, tokens(5))
    with pytest.raises(ValueError):
        bm.lookup_prefix(1, tokens(5))
    bm.check_integrity()


def test_record_lookup_counts_queries_and_hits() -> None:
    """record_lookup adds the prompt's tokens to queries and the tokens found to hits."""
    bm = BlockManager(16, BS)
    prompt = tokens(3 * BS + 1)
    computed(bm, 1, prompt)
    assert (bm.counters.queries, bm.counters.hits) == (len(prompt), 0)
    computed(bm, 2, prompt)
    assert (bm.counters.queries, bm.counters.hits) == (2 * len(prompt), 3 * BS)
    computed(bm, 3, prompt[: 2 * BS])
    assert (bm.counters.queries, bm.counters.hits) == (2 * len(prompt) + 2 * BS, 4 * BS)
    bm.check_integrity()


def test_shared_blocks_have_two_references_and_survive_one_free() -> None:
    """Two sequences share their common prefix blocks; freeing one leaves those blocks with the other."""
    bm = BlockManager(8, BS)
    prompt = tokens(2 * BS)
    t1 = list(computed(bm, 1, [*prompt, 1, 2]))
    t2 = list(computed(bm, 2, [*prompt, 3]))
    assert t1[:2] == t2[:2]
    assert t1[2] != t2[2]
    assert [bm.ref_counts[b] for b in t1] == [2, 2, 1]
    assert bm.ref_counts[t2[2]] == 1
    assert bm.num_free_blocks == 4
    bm.free(1)
    assert [bm.ref_counts[b] for b in t2] == [1, 1, 1]
    assert t1[2] in bm.free_queue
    assert all(b not in bm.free_queue for b in t2)
    assert bm.num_free_blocks == 5
    assert bm.lookup_prefix(3, [*prompt, 9]) == 2 * BS  # still cached and held by sequence 2
    assert [bm.ref_counts[b] for b in t2[:2]] == [2, 2]
    bm.check_integrity()
    bm.free(2)
    bm.free(3)
    assert bm.num_free_blocks == 8
    bm.check_integrity()


def test_freed_blocks_stay_cached_until_reallocated() -> None:
    """A freed sequence's full blocks can still be hit, which takes them back out of the free queue."""
    bm = BlockManager(4, BS)
    prompt = tokens(2 * BS + 1)
    t1 = list(computed(bm, 1, prompt))
    bm.free(1)
    assert bm.num_free_blocks == 4
    assert bm.lookup_prefix(2, prompt) == 2 * BS
    assert bm.block_table(2) == t1[:2]
    assert all(bm.ref_counts[b] == 1 and b not in bm.free_queue for b in t1[:2])
    assert bm.num_free_blocks == 2
    bm.check_integrity()


def test_eviction_follows_free_order_tail_blocks_first() -> None:
    """Never-used blocks go first, then cached blocks in the order freed: a sequence's tail before its head."""
    bm = BlockManager(6, BS)
    a, b = tokens(2 * BS, 100), tokens(2 * BS, 200)
    ta = list(computed(bm, 1, a))
    tb = list(computed(bm, 2, b))
    unused = [x for x in range(6) if x not in ta + tb]
    bm.free(1)
    bm.free(2)
    assert list(bm.free_queue) == [*unused, ta[1], ta[0], tb[1], tb[0]]
    assert len(bm.cached) == 4
    taken: list[int] = []
    for seq_id in range(10, 16):
        assert bm.allocate(seq_id, 1)
        taken.append(bm.block_table(seq_id)[0])
        bm.check_integrity()
    assert taken == [*unused, ta[1], ta[0], tb[1], tb[0]]
    assert bm.cached == {}
    bm.check_integrity()


def test_eviction_forgets_the_hash() -> None:
    """Reallocating a cached free block drops its hash: the next lookup stops right before it."""
    bm = BlockManager(3, BS)
    prompt = tokens(3 * BS)
    t1 = list(computed(bm, 1, prompt))
    assert len(bm.cached) == 3
    bm.free(1)  # free queue: t1[2], t1[1], t1[0]
    assert bm.allocate(2, 1)
    assert bm.block_table(2) == [t1[2]]
    assert bm.block_hash[t1[2]] is None
    assert len(bm.cached) == 2 and t1[2] not in bm.cached.values()
    assert bm.lookup_prefix(3, [*prompt, 5]) == 2 * BS  # block 3 is gone, blocks 1-2 still hit
    bm.check_integrity()
    assert bm.allocate(3, 3 * BS) is False  # needs one more block, none free
    bm.free(3)
    assert bm.allocate(4, 2 * BS)  # now takes t1[1] then t1[0]: everything evicted
    assert bm.block_table(4) == [t1[1], t1[0]]
    assert bm.cached == {}
    assert bm.lookup_prefix(5, [*prompt, 5]) == 0
    bm.check_integrity()


def test_hit_blocks_leave_and_rejoin_the_free_queue_at_the_tail() -> None:
    """A block hit while free and freed again is most recently freed, so evicted after the others."""
    bm = BlockManager(4, BS)
    a, b = tokens(BS + 1, 100), tokens(BS + 1, 200)
    ta = list(computed(bm, 1, a))
    tb = list(computed(bm, 2, b))
    bm.free(1)
    bm.free(2)
    assert bm.lookup_prefix(3, a) == BS  # takes ta[0] out of the queue
    bm.free(3)  # and puts it back at the tail
    assert list(bm.free_queue) == [ta[1], tb[1], tb[0], ta[0]]
    bm.check_integrity()


def test_reset_prefix_cache_forgets_free_blocks_only() -> None:
    """reset_prefix_cache drops the hashes of free blocks and keeps those of blocks still in use."""
    bm = BlockManager(8, BS)
    a, b = tokens(2 * BS, 100), tokens(2 * BS, 200)
    computed(bm, 1, a)
    tb = list(computed(bm, 2, b))
    bm.free(1)
    assert len(bm.cached) == 4
    bm.reset_prefix_cache()
    assert sorted(bm.cached.values()) == sorted(tb)
    bm.check_integrity()
    assert bm.lookup_prefix(3, [*a, 1]) == 0
    assert bm.lookup_prefix(4, [*b, 1]) == 2 * BS
    bm.check_integrity()
    for seq_id in (2, 3, 4):
        bm.free(seq_id)
    bm.reset_prefix_cache()
    assert bm.cached == {}
    assert bm.block_hash == [None] * 8
    assert bm.num_free_blocks == 8
    bm.check_integrity()


def test_disabled_prefix_caching_never_hits_or_counts() -> None:
    """With prefix caching off nothing is hashed, looked up or counted."""
    bm = BlockManager(8, BS, enable_prefix_caching=False)
    prompt = tokens(2 * BS + 1)
    t1 = list(computed(bm, 1, prompt))
    t2 = list(computed(bm, 2, prompt))
    assert not set(t1) & set(t2)
    assert bm.cached == {}
    assert bm.block_hash == [None] * 8
    assert bm.hashes[1] == [] and bm.hashes[2] == []
    assert (bm.counters.queries, bm.counters.hits) == (0, 0)
    bm.free(1)
    assert bm.lookup_prefix(3, prompt) == 0
    bm.check_integrity()


# ---- the checker itself ---------------------------------------------------------------------------


def _bump_ref(bm: BlockManager) -> None:
    bm.ref_counts[bm.block_table(1)[0]] += 1


def _drop_from_free_queue(bm: BlockManager) -> None:
    del bm.free_queue[next(iter(bm.free_queue))]


def _free_a_held_block(bm: BlockManager) -> None:
    bm.free_queue[bm.block_table(1)[0]] = None


def _duplicate_block(bm: BlockManager) -> None:
    table = bm.block_table(1)
    table.append(table[0])
    bm.ref_counts[table[0]] += 1


def _wrong_cached_block(bm: BlockManager) -> None:
    h = next(iter(bm.cached))
    bm.cached[h] = next(b for b in bm.block_table(1) if bm.block_hash[b] != h)


def _stray_hash(bm: BlockManager) -> None:
    bm.block_hash[bm.block_table(1)[-1]] = 12345


def _too_many_hashes(bm: BlockManager) -> None:
    bm.hashes[1].extend([1, 2, 3, 4, 5])


@pytest.mark.parametrize(
    "corrupt",
    [
        _bump_ref,
        _drop_from_free_queue,
        _free_a_held_block,
        _duplicate_block,
        _wrong_cached_block,
        _stray_hash,
        _too_many_hashes,
    ],
)
def test_check_integrity_catches_corruption(corrupt: Callable[[BlockManager], None]) -> None:
    """The invariant checker that every other test relies on does fail on broken state."""
    bm = BlockManager(8, BS)
    computed(bm, 1, tokens(2 * BS + 1))
    bm.check_integrity()  # sound before
    corrupt(bm)
    with pytest.raises(AssertionError):
        bm.check_integrity()
