"""Shared checks of pipeline inputs: one string or a list of strings."""

from __future__ import annotations

from typing import Any


def as_text_list(inputs: Any, field: str = "inputs") -> tuple[list[str], bool]:
    """Return (texts, was_single); reject empty or non-string items by index."""
    single = isinstance(inputs, str)
    texts = [inputs] if single else inputs
    if not isinstance(texts, list | tuple):
        raise ValueError(f"{field}: expected a string or a list of strings, got {type(inputs).__name__}")
    if not texts:
        raise ValueError(f"{field}: empty list")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise ValueError(f"{field}[{i}]: expected a string, got {type(t).__name__}")
        if not t.strip():
            raise ValueError(f"{field}[{i}]: empty string")
    return list(texts), single
