"""Paged KV-cache bookkeeping: fixed-size blocks, per-sequence block tables, prefix caching.

Plain ints and lists, no torch: the tensors live in `paged_cache.py`; this file only decides
which block holds which tokens. A *full* block is identified by a hash chained over every token
before it, so two sequences that start with the same tokens share the blocks of that prefix
(automatic prefix caching, as in vLLM). Blocks whose reference count falls to zero go to the
tail of a free queue but keep their hash: a later request can still hit them, until allocation
takes them from the head of the queue (least recently freed first) and the hash is forgotten.
"""

from __future__ import annotations

from dataclasses import dataclass

BlockHash = int


@dataclass
class CacheCounters:
    queries: int = 0  # prompt tokens looked up in the prefix cache
    hits: int = 0  # of those, tokens found computed


class BlockManager:
    def __init__(self, num_blocks: int, block_size: int, enable_prefix_caching: bool = True) -> None:
        if num_blocks < 1 or block_size < 1:
            raise ValueError(f"need num_blocks >= 1 and block_size >= 1, got {num_blocks}, {block_size}")
        self.num_blocks, self.block_size = num_blocks, block_size
        self.enable_prefix_caching = enable_prefix_caching
        self.ref_counts = [0] * num_blocks
        self.block_hash: list[BlockHash | None] = [None] * num_blocks
        self.cached: dict[BlockHash, int] = {}  # hash of a full computed block -> block id
        # free blocks in eviction order; a dict is an ordered set with O(1) removal
        self.free_queue: dict[int, None] = dict.fromkeys(range(num_blocks))
        self.tables: dict[int, list[int]] = {}  # seq id -> block ids in order
        self.hashes: dict[int, list[BlockHash]] = {}  # seq id -> hashes of its full blocks so far
        self.counters = CacheCounters()

    # ---- queries ------------------------------------------------------------------------
    @property
    def num_free_blocks(self) -> int:
        return len(self.free_queue)

    @property
    def usage(self) -> float:
        """Fraction of blocks held by sequences (cached-but-free blocks count as free)."""
        return 1.0 - len(self.free_queue) / self.num_blocks

    def blocks_needed(self, num_tokens: int) -> int:
        return -(-num_tokens // self.block_size)

    def block_table(self, seq_id: int) -> list[int]:
        return self.tables[seq_id]

    # ---- allocation -------------------------------------------------------------------------
    def lookup_prefix(self, seq_id: int, token_ids: list[int]) -> int:
        """Attach the cached blocks of the longest computed prefix of `token_ids` to a new sequence.

        Returns how many tokens are already computed (a multiple of the block size). At least one
        token is always left to compute, because the step that computes it yields the logits.
        """
        if seq_id in self.tables:
            raise ValueError(f"sequence {seq_id} already has blocks")
        self.tables[seq_id], self.hashes[seq_id] = [], []
        if not self.enable_prefix_caching:
            return 0
        table, hashes, parent = self.tables[seq_id], self.hashes[seq_id], None
        for start in range(0, len(token_ids) - 1 - self.block_size + 1, self.block_size):
            h = _hash_block(parent, token_ids[start : start + self.block_size])
            block = self.cached.get(h)
            if block is None:
                break
            if self.ref_counts[block] == 0:
                del self.free_queue[block]
            self.ref_counts[block] += 1
            table.append(block)
            hashes.append(h)
            parent = h
        return len(table) * self.block_size

    def record_lookup(self, num_tokens: int, num_hit: int) -> None:
        """Count one admitted sequence's prefix-cache query (not retries of a refused admission)."""
        if self.enable_prefix_caching:
            self.counters.queries += num_tokens
            self.counters.hits += num_hit

    def can_allocate(self, seq_id: int, num_tokens: int) -> bool:
        return self.blocks_needed(num_tokens) - len(self.tables.get(seq_id, ())) <= len(self.free_queue)

    def allocate(self, seq_id: int, num_tokens: int) -> bool:
        """Grow the sequence's table to hold `num_tokens` tokens; False (and no change) if blocks run out."""
        table = self.tables.setdefault(seq_id, [])
        self.hashes.setdefault(seq_id, [])
        need = self.blocks_needed(num_tokens) - len(table)
        if need > len(self.free_queue):
            return False
        for _ in range(need):
            block = next(iter(self.free_queue))
            del self.free_queue[block]
            if self.block_hash[block] is not None:  # evict: its contents are about to be overwritten
                h = self.block_hash[block]
                if self.cached.get(h) == block:
                    del self.cached[h]
                self.block_hash[block] = None
            self.ref_counts[block] = 1
            table.append(block)
        return True

    def commit(self, seq_id: int, token_ids: list[int], num_computed: int) -> None:
        """Register the blocks that `num_computed` computed tokens have filled, for later reuse."""
        if not self.enable_prefix_caching:
            return
        table, hashes = self.tables[seq_id], self.hashes[seq_id]
        parent = hashes[-1] if hashes else None
        for i in range(len(hashes), num_computed // self.block_size):
            h = _hash_block(parent, token_ids[i * self.block_size : (i + 1) * self.block_size])
            hashes.append(h)
            block = table[i]
            if self.block_hash[block] is None and h not in self.cached:
                self.block_hash[block] = h
                self.cached[h] = block
            parent = h

    def free(self, seq_id: int) -> None:
        """Release a sequence's blocks; tail blocks first so that shared prefixes are evicted last."""
        table = self.tables.pop(seq_id, None)
        self.hashes.pop(seq_id, None)
        if table is None:
            return
        for block in reversed(table):
            self.ref_counts[block] -= 1
            if self.ref_counts[block] == 0:
                self.free_queue[block] = None

    def reset_prefix_cache(self) -> None:
        for h, block in list(self.cached.items()):
            if self.ref_counts[block] == 0:
                del self.cached[h]
                self.block_hash[block] = None

    # ---- invariants ---------------------------------------------------------------------------
    def check_integrity(self) -> None:
        """Raise AssertionError naming the first broken invariant (tests call this after each scenario)."""
        refs = [0] * self.num_blocks
        for seq, table in self.tables.items():
            if len(set(table)) != len(table):
                raise AssertionError(f"sequence {seq} holds a block twice: {table}")
            if len(self.hashes[seq]) > len(table):
                raise AssertionError(f"sequence {seq} has more block hashes than blocks")
            for block in table:
                refs[block] += 1
        if refs != self.ref_counts:
            bad = [b for b in range(self.num_blocks) if refs[b] != self.ref_counts[b]]
            raise AssertionError(f"reference counts wrong for blocks {bad[:10]}")
        free = [b for b in range(self.num_blocks) if refs[b] == 0]
        if sorted(self.free_queue) != free:
            raise AssertionError("free queue does not hold exactly the unreferenced blocks")
        for h, block in self.cached.items():
            if self.block_hash[block] != h:
                raise AssertionError(f"cached hash {h} points at block {block} that holds {self.block_hash[block]}")
        hashed = [b for b in range(self.num_blocks) if self.block_hash[b] is not None]
        if len(hashed) != len(self.cached):
            raise AssertionError("a block carries a hash that the cache map does not know")


def _hash_block(parent: BlockHash | None, tokens: list[int]) -> BlockHash:
    return hash((parent, tuple(tokens)))
