"""RMSNorm through the C kernel (`engine/native/rms_norm.c`) against its torch form."""

from __future__ import annotations

import pytest
import torch

from brainwork.layers import norm as norm_mod
from brainwork.layers.norm import RMSNorm

TOL = 2e-6  # relative: only the order of the sum of squares differs


def _torch_form(m: RMSNorm, x: torch.Tensor) -> torch.Tensor:
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + m.eps)
    return (h * (m.offset + m.weight.float())).to(x.dtype) if m.offset else m.weight * h.to(x.dtype)


@pytest.mark.parametrize("shape", [(1, 64), (7, 576), (512, 896), (5, 4, 64)])  # (N, H, D): Gemma's q/k norms
@pytest.mark.parametrize("offset", [0.0, 1.0])
def test_native_norm_and_residual_add_match_torch(shape: tuple[int, ...], offset: float) -> None:
    assert norm_mod._kernel() is not None, "the C kernel did not build (is a C compiler installed?)"
    gen = torch.Generator().manual_seed(shape[-1])
    m = RMSNorm(shape[-1], 1e-6, offset)
    m.weight.data = torch.randn(shape[-1], generator=gen)
    x, r = torch.randn(shape, generator=gen) * 3, torch.randn(shape, generator=gen)
    ref = _torch_form(m, x)
    got = m(x)
    assert ((got - ref).abs() / ref.abs().clamp_min(1e-3)).max().item() < TOL
    total, normed = m.add(x, r)
    assert torch.equal(total, x + r)
    ref2 = _torch_form(m, x + r)
    assert ((normed - ref2).abs() / ref2.abs().clamp_min(1e-3)).max().item() < TOL
    # a row alone gives the bits it gives in the batch
    assert torch.equal(m(x[-1:].contiguous()), got[-1:])


def test_the_kernel_is_what_runs_and_other_inputs_take_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    m = RMSNorm(64, 1e-5)
    m.weight.data = torch.randn(64)
    x = torch.randn(3, 64)
    calls: list[int] = []
    real = norm_mod._kernel()
    assert real is not None

    def counting(*args: object) -> int:
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(norm_mod, "_kernel", lambda: counting)
    m(x)
    m.add(x, x)
    assert len(calls) == 2
    m(x.bfloat16())  # another dtype
    m(x.t().contiguous().t())  # not contiguous
    assert len(calls) == 2
