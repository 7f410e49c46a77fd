"""Attention over a KV store that the caller owns.

Models see one flat batch: N tokens from any number of sequences. Where keys and values live
(the engine's paged cache, `brainwork.engine.paged_cache`) is the business of the `KVStore`
passed into `forward`; attention layers only project, rotate and hand over.
"""

from __future__ import annotations

from typing import Protocol

import torch


class KVStore(Protocol):
    """Stores this step's keys/values of `layer` and attends the step's queries over its history."""

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
        ...
