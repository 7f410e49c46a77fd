"""Token embeddings read straight from a GGUF file's quantized rows, dequantized per lookup.

A step looks up N rows of a (V, H) table: dequantizing those rows costs microseconds, while a
float copy of the table costs V x H x 4 bytes (545 MB for Qwen2.5's 152k x 896). The rows stay in
the memory-mapped file, so only the pages of tokens actually used become resident.
"""

from __future__ import annotations

import numpy as np
import torch
from gguf import GGMLQuantizationType, quants
from torch import nn


class GGUFEmbedding(nn.Module):
    def __init__(self, raw: np.ndarray, qtype: GGMLQuantizationType, dim: int, dtype: torch.dtype) -> None:
        super().__init__()
        # (V, bytes per row) uint8, memory-mapped; as a plain ndarray view, because indexing a
        # np.memmap runs its Python-level subclass hooks on every lookup (~40 us a decode step)
        self.raw, self.qtype = raw.view(np.ndarray), qtype
        self.num_embeddings, self.embedding_dim, self.dtype = raw.shape[0], dim, dtype

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        rows = self.raw[ids.reshape(-1).numpy()]  # (N, bytes): fancy indexing copies only these rows
        if self.qtype == GGMLQuantizationType.F32:
            values = rows.view(np.float32)
        elif self.qtype == GGMLQuantizationType.F16:
            values = rows.view(np.float16).astype(np.float32)
        elif self.qtype == GGMLQuantizationType.Q8_0:  # d * code per 34-byte block, as ggml and gguf do,
            # without gguf's general row grouping: a decode step's one row in ~10 us instead of ~150
            blocks = rows.reshape(-1, 34)  # (N * H/32, 34): fp16 d, 32 int8 codes
            values = blocks[:, 2:].view(np.int8).astype(np.float32) * blocks[:, :2].view(np.float16).astype(np.float32)
        elif self.qtype == GGMLQuantizationType.Q5_0:  # (nibble | fifth bit << 4) - 16, times d
            blocks = rows.reshape(-1, 22)  # (N * H/32, 22): fp16 d, 32 fifth bits, 16 bytes of nibbles
            qh = blocks[:, 2:6].copy().view(np.uint32)  # (B, 1): bit i is value i's fifth bit
            high = ((qh >> np.arange(32, dtype=np.uint32)) & 1).astype(np.uint8) << 4  # (B, 32)
            qs = blocks[:, 6:]
            codes = np.concatenate([qs & 0x0F, qs >> 4], axis=1) | high  # (B, 32): values 0..15, then 16..31
            values = (codes.astype(np.int8) - 16).astype(np.float32) * blocks[:, :2].view(np.float16).astype(np.float32)
        else:
            values = quants.dequantize(rows, self.qtype)
        out = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)).to(self.dtype)
        return out.view(*ids.shape, self.embedding_dim)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, {self.qtype.name} rows from the file"
