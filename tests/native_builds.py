"""Builds of the C kernels with other `-march` targets than the cached native one, so that the
AVX2 and portable forms are tested on any x86-64 machine."""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path
from typing import Any

from brainwork.engine import native


def build(tmp: Path, name: str, march: str) -> ctypes.CDLL:
    """`engine/native/<name>.c` compiled for `march` into `tmp`, loaded."""
    source = Path(native.__file__).with_name(f"{name}.c")
    target = tmp / f"{name}_{march}.so"
    cc = shutil.which("cc") or shutil.which("gcc")
    assert cc is not None
    flags = ["-O2", f"-march={march}", "-shared", "-fPIC", "-fopenmp"]
    subprocess.run([cc, *flags, "-o", str(target), str(source), "-lm"], check=True)
    return ctypes.CDLL(str(target))


def build_function(tmp: Path, name: str, march: str, symbol: str, argtypes: list[Any]) -> Any:
    """One function of such a build, with its signature (returning int) set."""
    fn = getattr(build(tmp, name, march), symbol)
    fn.argtypes, fn.restype = argtypes, ctypes.c_int
    return fn
