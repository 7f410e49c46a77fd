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
    key = hashlib.sha256(source.read_bytes() + " ".join(_FLAGS).encode() + platform.machine().encode()).hexdigest()
    target = _cache_dir() / f"{name}-{key[:16]}.so"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            built = Path(tmp) / target.name
            result = subprocess.run(
                [compiler, *_FLAGS, "-o", str(built), str(source), "-lm"], capture_output=True, text=True
            )
            if result.returncode != 0:
                log.warning("building %s failed, using the torch path:\n%s", name, result.stderr[-2000:])
                return None
            os.replace(built, target)  # atomic: concurrent builders never load half a file
        log.info("built %s", target)
    return ctypes.CDLL(str(target))
