"""Hand freed heap memory back to the OS while a model is being transformed.

Replacing a weight with a new copy (fusing q/k/v, packing for oneDNN) frees the old tensor, but
glibc keeps a large free chunk in its heap when the dynamic mmap threshold has grown past it, so
the process's resident size keeps counting it. Over 60 such groups SmolLM2's load peak went from
1.25x to 1.63x the weights in some runs (`tests/load_memory.py`); `malloc_trim` after each
replacement holds it at the first figure.
"""

from __future__ import annotations

import ctypes
from functools import cache


@cache
def _malloc_trim() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    try:
        return ctypes.CDLL(None).malloc_trim  # glibc
    except (OSError, AttributeError):
        return None


def release_freed() -> None:
    """Return the heap's free pages to the OS (a no-op off glibc)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
