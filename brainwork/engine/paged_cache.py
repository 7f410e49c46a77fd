"""The paged KV cache's tensors, and attention over it for one step's flat batch of tokens.

Keys and values of layer l live in `k[l]`, `v[l]`: `(num_blocks, block_size, Hkv, D)`. A
sequence's tokens sit in the blocks its block table lists, in order. Each step the runner builds
one `PagedAttention` (the model's `KVStore`) from the scheduled chunks; its index tensors and
masks are made once and reused by every layer.

Attention on CPU without a custom kernel, measured (see docs/ARCHITECTURE.md): whole blocks are
gathered with `index_select` (several times faster than advanced indexing of single slots), and
query heads are regrouped per KV head, `(Hkv, G * n, D)`, so that grouped-query attention runs as
one `scaled_dot_product_attention` call with no repeated keys. Decoding sequences of similar
length are batched into one call; their padding is masked.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from brainwork.engine.native_decode import NativeDecode
from brainwork.numerics import native as ggml_native
from brainwork.numerics.flash_attention import ggml_attention

Q_BLOCK = 128  # a prompt chunk's queries attend in blocks of about this many rows (`_causal_blocks`)


class PagedKVCache:
    def __init__(
        self, num_layers: int, num_blocks: int, block_size: int, num_kv_heads: int, head_dim: int, dtype: torch.dtype
    ) -> None:
        self.num_blocks, self.block_size = num_blocks, block_size
        shape = (num_blocks, block_size, num_kv_heads, head_dim)
        self.k = [torch.zeros(shape, dtype=dtype) for _ in range(num_layers)]
        self.v = [torch.zeros(shape, dtype=dtype) for _ in range(num_layers)]
        self.native = NativeDecode.create(dtype, head_dim)  # None: decode through gather + SDPA
        # llama.cpp's arithmetic (`brainwork.numerics`): every chunk attends with ggml's algorithm
        self.ggml = False
        self.ggml_order: torch.Tensor | None = None  # q.k summation order of `llama` GGUF files
        # gather buffers reused by every layer and step: fresh multi-MB tensors each layer cost
        # page faults that measured slower than the copy itself
        self._work = [torch.empty(0, dtype=dtype), torch.empty(0, dtype=dtype)]

    def gather(self, which: int, layer: int, blocks: torch.Tensor) -> torch.Tensor:
        """Blocks `(n,)` of layer `layer`'s keys (0) or values (1) -> `(n, block_size, Hkv, D)`."""
        src = (self.k, self.v)[which][layer]
        shape = (blocks.shape[0], *src.shape[1:])
        size = shape[0] * src[0].numel()
        if self._work[which].numel() < size:
            self._work[which] = torch.empty(int(size * 1.25), dtype=src.dtype)
        out = self._work[which][:size].view(shape)
        return torch.index_select(src, 0, blocks, out=out)

    @staticmethod
    def bytes_per_block(num_layers: int, block_size: int, num_kv_heads: int, head_dim: int, dtype: torch.dtype) -> int:
        return 2 * num_layers * block_size * num_kv_heads * head_dim * torch.empty(0, dtype=dtype).element_size()


@dataclass
class ChunkMeta:
    """One sequence's part of the step: `num_tokens` new tokens after `start` computed ones."""

    start: int
    num_tokens: int
    block_table: list[int]


@dataclass
class _Group:
    rows: torch.Tensor | slice  # which rows of the flat batch are this group's queries
    blocks: torch.Tensor | None  # (B * nb,) block ids to gather; None: attend to this step's own k/v
    batch: int  # B sequences (decode) or 1 (a prompt chunk)
    span: int  # Tk: key positions per sequence after the gather (nb * block_size) or n
    q_pos: torch.Tensor  # (B, Tq) absolute positions of the queries
    k_len: torch.Tensor  # (B,) valid keys per sequence (positions >= k_len are padding)
    start: int = 0  # a prompt chunk's first position (keys from 0 are its cached context)


@dataclass
class _NativeGroup:
    """All decoding sequences, for the C kernel: no padding, no gather."""

    rows: torch.Tensor  # (B,) int64
    lens: torch.Tensor  # (B,) int64
    tables: torch.Tensor  # (B, nb) int64, padded with block 0 (never read past lens)

    @classmethod
    def build(cls, decodes: list[tuple[int, int, ChunkMeta]]) -> _NativeGroup:
        nb = max(len(c.block_table) for _, _, c in decodes)
        tables = torch.zeros(len(decodes), nb, dtype=torch.long)
        for b, (_, _, c) in enumerate(decodes):
            tables[b, : len(c.block_table)] = torch.tensor(c.block_table, dtype=torch.long)
        lens = torch.tensor([d[0] for d in decodes], dtype=torch.long)
        rows = torch.tensor([d[1] for d in decodes], dtype=torch.long)
        return cls(rows, lens, tables)


class PagedAttention:
    """The model-facing `KVStore` for one forward pass over the paged cache."""

    def __init__(self, cache: PagedKVCache, chunks: list[ChunkMeta], bucket_slack: float = 1.25) -> None:
        self.cache = cache
        self.chunks = chunks
        bs = cache.block_size
        slots: list[int] = []  # cache slot of every token in the flat batch, in row order
        self.groups: list[_Group] = []
        decodes: list[tuple[int, int, ChunkMeta]] = []  # (context length, row, chunk)
        row = 0
        for c in chunks:
            end = c.start + c.num_tokens
            slots.extend(c.block_table[p // bs] * bs + p % bs for p in range(c.start, end))
            if c.num_tokens == 1:  # decodes need no tensors here: the kernel or bucketing builds them
                decodes.append((end, row, c))
            elif not cache.ggml:  # ggml's attention reads the chunks themselves (ggml_rows): no groups
                rows, pos = slice(row, row + c.num_tokens), torch.arange(c.start, end)[None]
                if c.start == 0:  # a fresh prompt chunk sees only its own keys: no gather
                    self.groups.append(_Group(rows, None, 1, c.num_tokens, pos, torch.tensor([end])))
                else:
                    nb = -(-end // bs)
                    blocks = torch.tensor(c.block_table[:nb], dtype=torch.long)
                    self.groups.append(_Group(rows, blocks, 1, nb * bs, pos, torch.tensor([end]), c.start))
            row += c.num_tokens
        self.slot_mapping = torch.tensor(slots, dtype=torch.long)  # (N,)
        self.native: _NativeGroup | None = None
        if decodes and cache.native is not None and not cache.ggml:
            self.native = _NativeGroup.build(decodes)
        elif not cache.ggml:
            self._bucket_decodes(decodes, bucket_slack)
        self._masks: dict[tuple[int, int | None], torch.Tensor] = {}
        self._block_masks: dict[tuple[int, int | None], list[torch.Tensor]] = {}
        self._ggml_rows: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None  # for the C kernel

    def _bucket_decodes(self, decodes: list[tuple[int, int, ChunkMeta]], slack: float) -> None:
        """Group decoding sequences of similar length so that padding stays under `slack`."""
        bs = self.cache.block_size
        decodes.sort(key=lambda d: d[0])
        i = 0
        while i < len(decodes):
            j = i + 1
            while j < len(decodes) and -(-decodes[j][0] // bs) <= slack * -(-decodes[i][0] // bs) + 1:
                j += 1
            part = decodes[i:j]
            nb = -(-part[-1][0] // bs)
            table = torch.zeros(len(part), nb, dtype=torch.long)  # padded with block 0, masked out
            for b, (_, _, c) in enumerate(part):
                used = c.block_table[:nb]
                table[b, : len(used)] = torch.tensor(used, dtype=torch.long)
            lengths = torch.tensor([d[0] for d in part])
            rows = torch.tensor([d[1] for d in part])
            self.groups.append(_Group(rows, table.view(-1), len(part), nb * bs, (lengths - 1)[:, None], lengths))
            i = j

    def _mask(self, gi: int, g: _Group, window: int | None, groups_per_kv: int) -> torch.Tensor:
        """Additive float mask `(B, 1, G * Tq, Tk)`: causal, padding and sliding window."""
        key = (gi, window)
        if key not in self._masks:
            k_pos = torch.arange(g.span)[None, None, :]  # (1, 1, Tk)
            q_pos = g.q_pos[:, :, None]  # (B, Tq, 1)
            ok = (k_pos <= q_pos) & (k_pos < g.k_len[:, None, None])
            if window is not None:
                ok &= q_pos - k_pos < window
            mask = torch.zeros(ok.shape).masked_fill_(~ok, float("-inf"))  # (B, Tq, Tk)
            b, tq, tk = mask.shape
            self._masks[key] = mask[:, None].expand(b, groups_per_kv, tq, tk).reshape(b, 1, groups_per_kv * tq, tk)
        return self._masks[key]

    def attend(
        self,
        layer: int,
        q: torch.Tensor,  # (N, Hq, D)
        k: torch.Tensor,  # (N, Hkv, D)
        v: torch.Tensor,  # (N, Hkv, D)
        *,
        scale: float,
        window: int | None,
    ) -> torch.Tensor:  # (N, Hq, D)
        kc, vc = self.cache.k[layer], self.cache.v[layer]
        hkv, d = kc.shape[2], kc.shape[3]
        kc.view(-1, hkv, d).index_copy_(0, self.slot_mapping, k.to(kc.dtype))
        vc.view(-1, hkv, d).index_copy_(0, self.slot_mapping, v.to(vc.dtype))
        if self.cache.ggml:
            return self._attend_ggml(layer, q, scale=scale, window=window)
        g_per_kv = q.shape[1] // hkv
        q = q.contiguous()
        out = torch.empty_like(q)
        if self.native is not None and self.cache.native is not None:
            n = self.native
            if q.dtype == torch.float32:
                self.cache.native(q, out, kc, vc, n.rows, n.lens, n.tables, scale, window)
            else:  # the kernel reads and writes float32 rows; bfloat16 caches are read in place
                qf = q.float()  # (N, Hq, D)
                of = torch.empty_like(qf)
                self.cache.native(qf, of, kc, vc, n.rows, n.lens, n.tables, scale, window)
                out[n.rows] = of[n.rows].to(q.dtype)
        for gi, g in enumerate(self.groups):
            qg = q[g.rows]  # (B * Tq, Hq, D)
            tq = qg.shape[0] // g.batch
            # (B, Tq, Hkv, G, D) -> (B, Hkv, G * Tq, D): queries grouped under their KV head
            qg = qg.view(g.batch, tq, hkv, g_per_kv, d).permute(0, 2, 3, 1, 4).reshape(g.batch, hkv, g_per_kv * tq, d)
            if g.blocks is None:
                keys, vals = k[g.rows].transpose(0, 1)[None], v[g.rows].transpose(0, 1)[None]  # (1, Hkv, n, D)
            else:
                keys = self.cache.gather(0, layer, g.blocks).view(g.batch, g.span, hkv, d).transpose(1, 2)
                vals = self.cache.gather(1, layer, g.blocks).view(g.batch, g.span, hkv, d).transpose(1, 2)
            mask = self._mask(gi, g, window, g_per_kv)
            if g.batch == 1 and tq >= Q_BLOCK * 3 // 2:
                o = self._causal_blocks(gi, g, qg, keys.to(q.dtype), vals.to(q.dtype), mask, window, scale)
            else:
                o = F.scaled_dot_product_attention(qg, keys.to(q.dtype), vals.to(q.dtype), attn_mask=mask, scale=scale)
            # (B, Hkv, G * Tq, D) -> (B * Tq, Hq, D)
            o = o.view(g.batch, hkv, g_per_kv, tq, d).permute(0, 3, 1, 2, 4).reshape(g.batch * tq, hkv * g_per_kv, d)
            out[g.rows] = o
        return out

    def _causal_blocks(
        self,
        gi: int,
        g: _Group,
        qg: torch.Tensor,  # (1, Hkv, G * Tq, D)
        keys: torch.Tensor,  # (1, Hkv, Tk, D)
        vals: torch.Tensor,
        mask: torch.Tensor,  # (1, 1, G * Tq, Tk)
        window: int | None,
        scale: float,
    ) -> torch.Tensor:  # (1, Hkv, G * Tq, D)
        """A long prompt chunk's queries in blocks of about `Q_BLOCK` rows, each over the keys up to
        its own last position only. SDPA with a mask computes every query against every key, so a
        whole causal chunk does twice the work it needs; in blocks of 128 the waste is an eighth at
        512 rows, 25-40% faster in SmolLM2's and Qwen2.5's shapes (docs/ARCHITECTURE.md)."""
        _, hkv, rows, d = qg.shape
        tq, span = g.q_pos.shape[1], keys.shape[2]
        gpk = rows // tq
        parts = -(-tq // Q_BLOCK)
        size = -(-tq // parts)  # equal blocks: 320 rows as 3 x 107, not 128 + 128 + 64
        key = (gi, window)
        if key not in self._block_masks:  # (1, 1, G * b, end) per block, made once for all layers
            m5 = mask.view(1, 1, gpk, tq, span)
            self._block_masks[key] = [
                m5[:, :, :, j : j + size, : g.start + min(tq, j + size)].reshape(1, 1, -1, g.start + min(tq, j + size))
                for j in range(0, tq, size)
            ]
        q5 = qg.view(1, hkv, gpk, tq, d)
        keys, vals = keys.contiguous(), vals.contiguous()  # sliced by every block below
        outs = []
        for j, m in zip(range(0, tq, size), self._block_masks[key], strict=True):
            e = min(tq, j + size)
            qb = q5[:, :, :, j:e].reshape(1, hkv, gpk * (e - j), d)
            end = g.start + e
            o = F.scaled_dot_product_attention(qb, keys[:, :, :end], vals[:, :, :end], attn_mask=m, scale=scale)
            outs.append(o.view(1, hkv, gpk, e - j, d))
        return torch.cat(outs, dim=3).view(1, hkv, rows, d)

    def ggml_rows(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """For the C attention: each row's chunk index `(N,)`, its position `(N,)`, and the chunks'
        block tables `(chunks, nb)` int64 padded with block 0 (never read past a row's position)."""
        if self._ggml_rows is None:
            seq, pos = [], []
            for i, c in enumerate(self.chunks):
                seq.extend([i] * c.num_tokens)
                pos.extend(range(c.start, c.start + c.num_tokens))
            nb = max(len(c.block_table) for c in self.chunks)
            tables = torch.zeros(len(self.chunks), nb, dtype=torch.long)
            for i, c in enumerate(self.chunks):
                tables[i, : len(c.block_table)] = torch.tensor(c.block_table, dtype=torch.long)
            self._ggml_rows = (torch.tensor(seq), torch.tensor(pos), tables)
        return self._ggml_rows

    def _attend_ggml(self, layer: int, q: torch.Tensor, *, scale: float, window: int | None) -> torch.Tensor:
        """Each chunk's queries over its sequence's float16 keys/values, as ggml computes them:
        prompt chunks one at a time, all one-token decodes in one batched call (padded keys are
        past every query's position, so they are skipped)."""
        kc, vc = self.cache.k[layer], self.cache.v[layer]
        hkv, d, bs = kc.shape[2], kc.shape[3], self.cache.block_size
        order = self.cache.ggml_order
        if ggml_native.available():  # every row of every chunk in one C call, cache read in place
            seq_t, pos_t, tables = self.ggml_rows()
            return ggml_native.attention(q, kc, vc, seq_t, pos_t, tables, scale, window, order)
        out = torch.empty(q.shape, dtype=torch.float32)
        decodes: list[tuple[int, ChunkMeta]] = []
        row = 0
        for c in self.chunks:
            end = c.start + c.num_tokens
            if c.num_tokens == 1:
                decodes.append((row, c))
            else:
                blocks = torch.tensor(c.block_table[: -(-end // bs)], dtype=torch.long)
                keys = kc[blocks].view(-1, hkv, d)[:end]  # (end, Hkv, D) float16
                vals = vc[blocks].view(-1, hkv, d)[:end]
                rows = slice(row, row + c.num_tokens)
                positions = torch.arange(c.start, end)
                out[rows] = ggml_attention(q[rows].float(), positions, keys, vals, scale, window, order)
            row += c.num_tokens
        if decodes:
            nb = max(-(-(c.start + 1) // bs) for _, c in decodes)
            tables = torch.zeros(len(decodes), nb, dtype=torch.long)  # padded with block 0: masked
            for i, (_, c) in enumerate(decodes):
                used = c.block_table[: -(-(c.start + 1) // bs)]
                tables[i, : len(used)] = torch.tensor(used, dtype=torch.long)
            keys = kc[tables].view(len(decodes), -1, hkv, d)  # (B, nb * bs, Hkv, D)
            vals = vc[tables].view(len(decodes), -1, hkv, d)
            rows = torch.tensor([r for r, _ in decodes])
            pos = torch.tensor([[c.start] for _, c in decodes])  # (B, 1)
            out[rows] = ggml_attention(q[rows][:, None].float(), pos, keys, vals, scale, window, order)[:, 0]
        return out
