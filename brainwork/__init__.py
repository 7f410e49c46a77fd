"""brainwork: run trained models to do useful work, fast, on an ordinary machine.

The public API is three names: `pipeline(task)`, `LLM` and `SamplingParams`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["LLM", "SamplingParams", "pipeline"]

if TYPE_CHECKING:
    from brainwork.llm import LLM
    from brainwork.pipelines import pipeline
    from brainwork.sampling_params import SamplingParams


def __getattr__(name: str) -> Any:
    # imported on first use so that `import brainwork` stays fast (torch loads only when needed)
    if name == "LLM":
        from brainwork.llm import LLM

        return LLM
    if name == "SamplingParams":
        from brainwork.sampling_params import SamplingParams

        return SamplingParams
    if name == "pipeline":
        from brainwork.pipelines import pipeline

        return pipeline
    raise AttributeError(f"module 'brainwork' has no attribute {name!r}")
