"""One forward pass over the scheduled chunks: a flat token batch in, logits of sampling rows out."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn

from brainwork.engine.paged_cache import ChunkMeta, PagedAttention, PagedKVCache
from brainwork.engine.scheduler import ScheduledChunk
from brainwork.numerics.rows import chunk_rows


@dataclass
class PromptRows:
    """Logits of the prompt rows a chunk scores: row i predicts prompt token `first + i`."""

    chunk: ScheduledChunk
    first: int  # the prompt position the first row predicts
    logits: torch.Tensor  # (m, V) float32


class ModelRunner:
    def __init__(self, model: nn.Module, cache: PagedKVCache) -> None:
        self.model, self.cache = model, cache
        self.forward_seconds = 0.0  # model time, so that the engine can state its own overhead

    @torch.inference_mode()
    def execute(self, chunks: list[ScheduledChunk]) -> tuple[torch.Tensor, list[PromptRows]]:
        """Logits `(S, V)` float32 for the chunks that sample, in their order; and the logits of
        the prompt rows that sequences with `score_from` asked for."""
        ids: list[int] = []
        positions: list[torch.Tensor] = []
        sample_rows: list[int] = []
        scored: list[tuple[ScheduledChunk, int, int, int]] = []  # chunk, first position, flat row, count
        for c in chunks:
            offset = len(ids)
            ids.extend(c.seq.token_ids[c.start : c.start + c.num_tokens])
            positions.append(torch.arange(c.start, c.start + c.num_tokens))
            if c.samples:
                sample_rows.append(len(ids) - 1)
            if c.seq.score_from is not None:
                # row p predicts token p + 1; the prompt's last row predicts the first sample
                lo = max(c.start, c.seq.score_from - 1)
                hi = min(c.start + c.num_tokens, c.seq.num_prompt_tokens - 1)
                if hi > lo:
                    scored.append((c, lo + 1, offset + lo - c.start, hi - lo))
        attn = PagedAttention(self.cache, [ChunkMeta(c.start, c.num_tokens, c.block_table) for c in chunks])
        start = time.perf_counter()
        # the chunks' row counts: llama.cpp's arithmetic (`numerics`) picks kernels per request
        with chunk_rows([c.num_tokens for c in chunks], [c.samples for c in chunks]):
            # only the rows that sample or are scored leave the model
            rows = [r for _, _, row, m in scored for r in range(row, row + m)]
            kept = sample_rows + rows
            # a pure decode step keeps every row in order: None spares the last block its row copies
            keep = None if kept == list(range(len(ids))) else torch.tensor(kept, dtype=torch.int64)
            hidden = self.model(torch.tensor(ids), torch.cat(positions), attn, keep)  # (S + P, H)
        s = len(sample_rows)
        logits = self.model.compute_logits(hidden[:s])  # (S, V)
        prompt_rows, at = [], 0
        if scored:  # a call of its own: the sampling rows' logits never depend on who is scored
            scored_logits = self.model.compute_logits(hidden[s:])  # (P, V)
            for c, first, _, m in scored:
                prompt_rows.append(PromptRows(c, first, scored_logits[at : at + m]))
                at += m
        self.forward_seconds += time.perf_counter() - start
        return logits, prompt_rows
