"""The vocabulary projection: oneDNN's matmul for plain float32 heads, the module's own otherwise."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

from brainwork.models import vocab


def _ops(fn) -> set[str]:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return {e.key for e in prof.key_averages()}


@pytest.mark.skipif(not vocab.ONEDNN, reason="this torch build has no oneDNN")
@pytest.mark.parametrize("rows", [1, 8, 64])
def test_float_head_runs_on_onednn_and_matches_linear(rows: int) -> None:
    gen = torch.Generator().manual_seed(rows)
    head = nn.Linear(576, 49152, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.randn(49152, 576, generator=gen) * 0.05)
    hidden = torch.randn(rows, 576, generator=gen)
    with torch.inference_mode():
        got = vocab.project(head, hidden)
        ops = _ops(lambda: vocab.project(head, hidden))
        want = head(hidden)
    assert "mkldnn::_linear_pointwise" in ops
    assert got.shape == (rows, 49152)
    assert (got - want).abs().max().item() < 1e-4  # summation order only


def test_other_heads_keep_their_forward() -> None:
    biased = nn.Linear(16, 32)
    half = nn.Linear(16, 32, bias=False).to(torch.bfloat16)
    x = torch.randn(3, 16)
    with torch.inference_mode():
        assert torch.equal(vocab.project(biased, x), biased(x))
        assert torch.equal(vocab.project(half, x.bfloat16()), half(x.bfloat16()))
        assert "mkldnn::_linear_pointwise" not in _ops(lambda: vocab.project(biased, x))
        assert vocab.project(biased, x[:0]).shape == (0, 32)  # no rows to sample
