"""K-quant matmuls of `quantization="ggml"` against ggml itself, on Qwen2.5-Coder's real weights.

ggml picks a kernel by activation row count (Q4_K repacked: gemm per 4 rows, gemv for the rest;
Q6_K and plain Q4_K: vec_dot below 8 rows, a tiled kernel from 8), so every count that switches
kernel is covered. Zero differing elements: the emulation is exact. The engine states its
chunks (`numerics.rows`); batched rows must then get the arithmetic each gets alone.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from brainwork.loader.gguf import GGUFFile
from brainwork.numerics.blocks import q4_k_blocks, q6_k_blocks
from brainwork.numerics.kquant_linear import GGMLKQuantLinear
from brainwork.numerics.rows import chunk_rows
from brainwork.store import resolve_model
from tests.refs import ggml_oracle as ggml

QWEN = "qwen2.5-coder-0.5b-instruct"
OUT_ROWS = 64  # a slice of the weight's output rows keeps the oracle's loops short


@pytest.fixture(scope="module")
def qwen() -> GGUFFile:
    return GGUFFile(resolve_model(QWEN, progress=False).path)


def _weight(f: GGUFFile, qtype: str) -> tuple[np.ndarray, int]:
    t = next(t for t in f.tensors if t.qtype.name == qtype and t.name.endswith("ffn_down.weight"))
    return np.ascontiguousarray(f.raw_rows(t)[:OUT_ROWS]), int(t.shape[-1])


def _linear(raw: np.ndarray, qtype: str, repacked: bool | None = None, c: bool | None = None) -> GGMLKQuantLinear:
    parts = (q4_k_blocks if qtype == "Q4_K" else q6_k_blocks)(raw)
    p = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in parts.items()}
    mins, dmin = p.get("mins"), p.get("dmin")
    return GGMLKQuantLinear(qtype, p["codes"], p["scales"], p["d"], None, mins, dmin, repacked=repacked, c_kernels=c)


def _activations(rows: int, k: int, seed: int) -> np.ndarray:
    """Hidden-state-like rows: heavy tails, a few outlier channels, and grid values (ties)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_t(3, (rows, k)) * 0.5
    x[:, rng.choice(k, 4, replace=False)] *= 40
    grid = rng.integers(-20, 21, (rows, k)) * 0.25
    return np.where(rng.random((rows, k)) < 0.3, grid, x).astype(np.float32)


@pytest.mark.parametrize("rows", [1, 3, 8, 13, 20])
def test_q6_k_matmul_matches_ggml(qwen: GGUFFile, rows: int) -> None:
    raw, k = _weight(qwen, "Q6_K")
    x = _activations(rows, k, rows)
    got = _linear(raw, "Q6_K")(torch.from_numpy(x)).numpy()
    assert np.array_equal(got, ggml.mul_mat(raw, "Q6_K", x))


@pytest.mark.parametrize("rows", [1, 9])
def test_q4_k_matmul_not_repacked_matches_ggml(qwen: GGUFFile, rows: int) -> None:
    raw, k = _weight(qwen, "Q4_K")
    x = _activations(rows, k, 100 + rows)
    got = _linear(raw, "Q4_K", repacked=False)(torch.from_numpy(x)).numpy()
    assert np.array_equal(got, ggml.mul_mat(raw, "Q4_K", x))


@pytest.mark.parametrize("rows", [1, 6, 12])
def test_q4_k_repacked_matmul_matches_ggml(qwen: GGUFFile, rows: int) -> None:
    raw, k = _weight(qwen, "Q4_K")
    x = _activations(rows, k, 200 + rows)
    got = _linear(raw, "Q4_K")(torch.from_numpy(x)).numpy()
    assert np.array_equal(got, ggml.q4_k_repacked_mm(raw, x))


@pytest.mark.parametrize("qtype", ["Q4_K", "Q6_K"])
def test_batched_chunks_get_their_own_kernels(qwen: GGUFFile, qtype: str) -> None:
    """A flat batch of chunks 5, 1, 1, 9, 1 rows (prompt chunks and decodes of five requests)
    gives each chunk exactly what it gives alone; without the statement it would not."""
    raw, k = _weight(qwen, qtype)
    lin = _linear(raw, qtype)
    sizes = [5, 1, 1, 9, 1]
    x = torch.from_numpy(_activations(sum(sizes), k, 7))
    alone = torch.cat([lin(part) for part in x.split(sizes)])
    with chunk_rows(sizes, [True] * len(sizes)):
        batched = lin(x)
    assert torch.equal(batched, alone)
    assert not torch.equal(lin(x), alone)  # one 17-row chunk takes other kernels


@pytest.mark.parametrize(("qtype", "repacked"), [("Q6_K", None), ("Q4_K", True)])
@pytest.mark.parametrize(("rows", "decodes"), [(1, False), (3, False), (6, False), (8, False), (13, False),
                                               (16, False), (44, False), (13, True), (20, True)])  # fmt: skip
def test_c_kernels_equal_the_torch_forms(
    qwen: GGUFFile, qtype: str, repacked: bool | None, rows: int, decodes: bool
) -> None:
    """The C kernels (`c_form`, used wherever a compiler is) and the torch forms (the fallback)
    give the same bits, for every row count that switches ggml's kernel: one chunk of `rows`
    rows, or `rows` one-row chunks (decodes, which C runs 8 rows at a time)."""
    from brainwork.numerics import native

    if not native.available():
        pytest.skip("no C compiler here: only the torch forms run")
    raw, k = _weight(qwen, qtype)
    c_mod, torch_mod = _linear(raw, qtype, repacked), _linear(raw, qtype, repacked, c=False)
    assert c_mod.c_form is not None and torch_mod.c_form is None
    x = torch.from_numpy(_activations(rows, k, 40 + rows))
    sizes = [1] * rows if decodes else [rows]
    with chunk_rows(sizes, [True] * len(sizes)):
        assert torch.equal(c_mod(x), torch_mod(x))
