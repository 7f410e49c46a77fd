"""Small C kernels, compiled on first use with the machine's C compiler and loaded with ctypes.

Why: decode attention over a paged cache in plain torch must first gather every sequence's
keys and values into a contiguous buffer (a copy of the whole KV history per layer per step);
the C kernel reads the blocks in place. It is built with OpenMP and runs on torch's own OpenMP
threads (torch has already loaded `libgomp.so.1`; the kernel's reference binds to the same copy),
so no second thread pool competes for the cores. When no compiler is found or the build fails, `load()` returns
None and the engine keeps the torch path (same results within float rounding); set
`BRAINWORK_NATIVE=0` to force that path.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

log = logging.getLogger("brainwork.native")

_FLAGS = ["-O3", "-march=native", "-shared", "-fPIC", "-fopenmp"]


def _cache_dir() -> Path:
    root = os.environ.get("BRAINWORK_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "brainwork")
    return Path(root) / "kernels"


@cache
def load(name: str) -> ctypes.CDLL | None:
    """Build (once per source, flags and machine) and load `name`.c; None when unavailable."""
    if os.environ.get("BRAINWORK_NATIVE", "1") == "0":
        return None
    compiler = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if compiler is None:
        log.info("no C compiler found: using the torch attention path")
        return None
    source = Path(__file__).with_name(f"{name}.c")
    # -march=native: a build is only good for this CPU, so its flags are part of the key
    key = hashlib.sha256(source.read_bytes() + " ".join(_FLAGS).encode() + _cpu_id().encode()).hexdigest()
    target = _cache_dir() / f"{name}-{key[:16]}.so"
    if not target.is_file():
        try:
            _build(compiler, source, target)
        except (OSError, subprocess.CalledProcessError) as e:
            detail = e.stderr[-2000:] if isinstance(e, subprocess.CalledProcessError) else str(e)
            log.warning("building %s failed, using the torch path: %s", name, detail)
            return None
        log.info("built %s", target)
    try:
        return ctypes.CDLL(str(target))
    except OSError as e:
        log.warning("loading %s failed, using the torch path: %s", target, e)
        return None


def function(name: str, symbol: str, argtypes: list[Any], restype: Any = ctypes.c_int) -> Any:
    """`symbol` of `name`.c (built and loaded by `load`) with its ctypes signature set; None when
    the library is unavailable. Callers keep the result (`functools.cache`)."""
    lib = load(name)
    if lib is None:
        return None
    fn = getattr(lib, symbol)
    fn.argtypes, fn.restype = argtypes, restype
    return fn


def _cpu_id() -> str:
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        info = ""
    flags = next((line for line in info.splitlines() if line.startswith(("flags", "Features"))), "")
    return f"{platform.machine()} {platform.processor()} {flags}"


def _build(compiler: str, source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        built = Path(tmp) / target.name
        cmd = [compiler, *_FLAGS, "-o", str(built), str(source), "-lm"]
        subprocess.run(cmd, capture_output=True, text=True, check=True)
        os.replace(built, target)  # atomic: a concurrent builder never loads half a file
