"""RoPE tables shared across the layers of one forward pass (`layers.rotary.shared_tables`)."""

from __future__ import annotations

import torch

from brainwork.layers.rotary import RotaryEmbedding, shared_tables
from brainwork.models.config import RopeConfig


def test_layers_with_the_same_settings_share_one_table_per_positions_tensor() -> None:
    a, b = RotaryEmbedding(RopeConfig(theta=10000.0), 16), RotaryEmbedding(RopeConfig(theta=10000.0), 16)
    local = RotaryEmbedding(RopeConfig(theta=10.0), 16)  # another setting (Gemma's sliding layers)
    pos, again = torch.arange(5), torch.arange(5)
    q, k = torch.randn(5, 4, 16), torch.randn(5, 2, 16)
    alone = a(pos, q, k)
    with shared_tables():
        cos, _ = a.tables(pos, torch.float32)
        assert b.tables(pos, torch.float32)[0] is cos  # computed once
        assert local.tables(pos, torch.float32)[0] is not cos
        assert not torch.equal(local.tables(pos, torch.float32)[0], cos)
        assert a.tables(again, torch.float32)[0] is not cos  # another tensor, even of equal values
        assert a.tables(pos, torch.bfloat16)[0].dtype == torch.bfloat16
        shared = b(pos, q, k)
    assert torch.equal(shared[0], alone[0]) and torch.equal(shared[1], alone[1])
    assert a.tables(pos, torch.float32)[0] is not a.tables(pos, torch.float32)[0]  # outside: no sharing
