"""RoPE tables shared across the layers of one forward pass (`layers.rotary.shared_tables`)."""

from __future__ import annotations

import pytest
import torch

from brainwork.layers import rotary as rotary_mod
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


@pytest.mark.parametrize(
    ("cfg", "hq", "hkv", "d", "n"),
    [
        (RopeConfig(theta=10000.0), 9, 3, 64, 5),  # SmolLM2's heads, a decode-sized batch
        (RopeConfig(theta=1000000.0), 14, 2, 64, 300),  # Qwen2.5's, rows enough for the threads
        (RopeConfig(theta=10000.0, type="yarn", factor=4.0, original_max_position=2048), 4, 1, 128, 50),  # mscale
        (RopeConfig(theta=10000.0), 2, 2, 32, 1),
    ],
)
def test_in_place_kernel_is_bit_equal_to_the_torch_form_on_fused_views(
    cfg: RopeConfig, hq: int, hkv: int, d: int, n: int
) -> None:
    rope = RotaryEmbedding(cfg, d)
    assert rotary_mod._kernel() is not None, "the C kernel did not build (is a C compiler installed?)"
    gen = torch.Generator().manual_seed(n)
    pos = torch.randint(0, 4000, (n,), generator=gen)
    fused = torch.randn(n, (hq + 2 * hkv) * d, generator=gen)  # a q/k/v projection's output (N, W)
    before = fused.clone()
    q2, k2, v2 = fused.split([hq * d, hkv * d, hkv * d], dim=-1)
    q, k = q2.view(n, hq, d), k2.view(n, hkv, d)
    ref_q, ref_k = rope(pos, q.clone(), k.clone())
    got_q, got_k = rope.rotate_(pos, q, k)
    assert got_q.data_ptr() == fused.data_ptr()  # rotated where it lies
    assert torch.equal(got_q, ref_q) and torch.equal(got_k, ref_k)
    assert torch.equal(v2, before[:, (hq + hkv) * d :])  # values untouched


def test_other_inputs_take_the_torch_form(monkeypatch: pytest.MonkeyPatch) -> None:
    rope = RotaryEmbedding(RopeConfig(theta=10000.0), 16)
    pos = torch.arange(6)
    q = torch.randn(6, 16, 4).transpose(1, 2)  # heads not contiguous: torch form, input kept
    kept = q.clone()
    assert torch.equal(rope.rotate_(pos, q, q[:, :2])[0], rope(pos, kept, kept[:, :2])[0])
    assert torch.equal(q, kept)
    for dtype in (torch.bfloat16, torch.float32):
        q, k = torch.randn(6, 4, 16, dtype=dtype), torch.randn(6, 2, 16, dtype=dtype)
        ref = rope(pos, q, k)
        if dtype == torch.float32:  # the kernel is not there: same result, new tensors
            monkeypatch.setattr(rotary_mod, "_kernel", lambda: None)
        got = rope.rotate_(pos, q.clone(), k.clone())
        assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1])
