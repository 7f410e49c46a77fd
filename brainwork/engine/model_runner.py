"""One forward pass over the scheduled chunks: a flat token batch in, logits of sampling rows out."""

from __future__ import annotations

import time

import torch
from torch import nn

from brainwork.engine.paged_cache import ChunkMeta, PagedAttention, PagedKVCache
from brainwork.engine.scheduler import ScheduledChunk
from brainwork.numerics.rows import chunk_rows


class ModelRunner:
    def __init__(self, model: nn.Module, cache: PagedKVCache) -> None:
        self.model, self.cache = model, cache
        self.forward_seconds = 0.0  # model time, so that the engine can state its own overhead

    @torch.inference_mode()
    def execute(self, chunks: list[ScheduledChunk]) -> torch.Tensor:
        """Logits `(S, V)` float32 for the chunks that sample, in their order."""
        ids: list[int] = []
        positions: list[torch.Tensor] = []
        sample_rows: list[int] = []
        for c in chunks:
            ids.extend(c.seq.token_ids[c.start : c.start + c.num_tokens])
            positions.append(torch.arange(c.start, c.start + c.num_tokens))
            if c.samples:
                sample_rows.append(len(ids) - 1)
        attn = PagedAttention(self.cache, [ChunkMeta(c.start, c.num_tokens, c.block_table) for c in chunks])
        start = time.perf_counter()
        # the chunks' row counts: llama.cpp's arithmetic (`numerics`) picks kernels per request
        with chunk_rows([c.num_tokens for c in chunks], [c.samples for c in chunks]):
            hidden = self.model(torch.tensor(ids), torch.cat(positions), attn)  # (N, H)
        logits = self.model.compute_logits(hidden[sample_rows])  # (S, V)
        self.forward_seconds += time.perf_counter() - start
        return logits
