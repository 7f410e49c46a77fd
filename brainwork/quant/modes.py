"""The `quantization` choices and what each does to a weight matrix of a given stored type."""

from __future__ import annotations

from brainwork.quant.gguf_blocks import INT4_TYPES

QUANTIZATIONS = ("auto", "none", "int8", "int4", "ggml")
FLOAT_TYPES = frozenset(["F32", "F16", "BF16"])


def check_quantization(q: str) -> str:
    if q not in QUANTIZATIONS:
        raise ValueError(f"quantization: expected one of {', '.join(QUANTIZATIONS)}, got {q!r}")
    return q


def plan(mode: str, stored: str, int4_shape_ok: bool) -> str:
    """How to keep one weight matrix: "float", "int4-exact" (GGUF 4-bit blocks repacked without
    loss), "int4" (requantized from float, group 32 min/max) or "int8" (per-row symmetric).

    `stored` is the GGUF type name, or "F32"/"BF16"/... for float checkpoints. With "auto":
    4-bit GGUF blocks -> int4 (exact); float -> float; any other GGUF type (Q5_0, Q5_1, Q6_K,
    Q8_0, Q2_K, Q3_K, Q5_K, ...) -> int8 per row, which adds far less error than requantizing
    to 4 bits (measured in tests/test_quant.py and the report of benchmarks/quant_vs_peers.py).
    """
    if mode == "none":
        return "float"
    if mode == "int8":
        return "int8"
    if stored in INT4_TYPES and int4_shape_ok:
        return "int4-exact"
    if mode == "int4":
        return "int4" if int4_shape_ok else "int8"
    return "float" if stored in FLOAT_TYPES else "int8"
