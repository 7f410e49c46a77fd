"""Building and loading the C kernel, and falling back cleanly when that is not possible."""

from __future__ import annotations

from pathlib import Path

import pytest

from brainwork.engine import native


@pytest.fixture(autouse=True)
def fresh(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("BRAINWORK_CACHE", str(tmp_path))
    native.load.cache_clear()
    yield
    native.load.cache_clear()


def test_builds_once_into_the_cache_and_loads(tmp_path: Path) -> None:
    lib = native.load("paged_decode")
    assert lib is not None and hasattr(lib, "paged_decode")
    built = list((tmp_path / "kernels").glob("paged_decode-*.so"))
    assert len(built) == 1
    stamp = built[0].stat().st_mtime_ns
    native.load.cache_clear()
    assert native.load("paged_decode") is not None
    assert built[0].stat().st_mtime_ns == stamp  # reused, not rebuilt


def test_a_failing_compiler_falls_back_to_torch(monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    monkeypatch.setenv("CC", "false")  # a "compiler" that always fails
    assert native.load("paged_decode") is None
    assert "using the torch path" in caplog.text


def test_switched_off_by_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BRAINWORK_NATIVE", "0")
    assert native.load("paged_decode") is None
    assert not (tmp_path / "kernels").exists()
