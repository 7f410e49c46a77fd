"""Shared fixtures: paths of the packaged models, resolved through brainwork's own model store."""

from __future__ import annotations

from pathlib import Path

import pytest


def _resolve(name: str) -> Path:
    from brainwork.store import resolve_model

    return resolve_model(name).path


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    return _resolve("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def qwen_gguf() -> Path:
    return _resolve("qwen2.5-coder-0.5b-instruct")


@pytest.fixture(scope="session")
def gemma_gguf() -> Path:
    return _resolve("gemma-3-270m")


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    return _resolve("all-minilm-l6-v2")
