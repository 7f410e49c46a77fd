"""A KV store with one growing contiguous buffer per sequence.

Enough for one-at-a-time generation and for parity tests; the batching engine replaces it with a
paged store behind the same `attend()` contract (see `brainwork.layers.attention.KVStore`).
"""

from __future__ import annotations

import torch

from brainwork.layers.attention import attention_reference


class ContiguousKVCache:
    def __init__(self, num_layers: int, num_kv_heads: int, head_dim: int, dtype: torch.dtype) -> None:
        self.num_layers = num_layers
        self.num_kv_heads, self.head_dim, self.dtype = num_kv_heads, head_dim, dtype
        self._k: dict[int, list[torch.Tensor]] = {}  # seq -> per layer (Hkv, capacity, D)
        self._v: dict[int, list[torch.Tensor]] = {}
        self.lengths: dict[int, int] = {}  # tokens stored per sequence
        self._segments: list[tuple[int, int, int]] = []  # (seq, start in batch, n tokens)
        self._next_id = 0

    def new_sequence(self) -> int:
        seq = self._next_id
        self._next_id += 1
        empty = [torch.empty(self.num_kv_heads, 0, self.head_dim, dtype=self.dtype)]
        self._k[seq], self._v[seq] = empty * self.num_layers, empty * self.num_layers
        self.lengths[seq] = 0
        return seq

    def free(self, seq: int) -> None:
        for table in (self._k, self._v, self.lengths):
            table.pop(seq, None)

    def prepare(self, seqs: list[int], num_tokens: list[int]) -> None:
        """Declare the next forward's batch: `num_tokens[i]` new tokens of `seqs[i]`, in order."""
        self._segments, start = [], 0
        for seq, n in zip(seqs, num_tokens, strict=True):
            self._segments.append((seq, start, n))
            start += n

    def attend(
        self,
        layer: int,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        *,
        scale: float,
        window: int | None,
    ) -> torch.Tensor:
        out = torch.empty_like(q)  # (N, Hq, D)
        for seq, start, n in self._segments:
            old = self.lengths[seq]
            keys = self._append(self._k[seq], layer, old, k[start : start + n])
            vals = self._append(self._v[seq], layer, old, v[start : start + n])
            qs = q[start : start + n].transpose(0, 1)  # (Hq, n, D)
            o = attention_reference(qs, keys, vals, scale=scale, window=window)
            out[start : start + n] = o.transpose(0, 1)
            if layer == self.num_layers - 1:
                self.lengths[seq] = old + n
        return out

    def _append(self, bufs: list[torch.Tensor], layer: int, old: int, new: torch.Tensor) -> torch.Tensor:
        """Write `new` (n, Hkv, D) after `old` stored tokens; return the filled (Hkv, old+n, D) view."""
        buf, n = bufs[layer], new.shape[0]
        if old + n > buf.shape[1]:  # grow by doubling so appends stay amortised O(1)
            grown = torch.empty(self.num_kv_heads, max(2 * buf.shape[1], old + n, 64), self.head_dim, dtype=self.dtype)
            grown[:, :old] = buf[:, :old]
            bufs[layer] = buf = grown
        buf[:, old : old + n] = new.transpose(0, 1)
        return buf[:, : old + n]
