"""Run as a script: `load_memory.py MODEL [QUANTIZATION]` loads a model and prints (peak RSS growth
while loading, bytes of the weights it keeps: parameters and buffers)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def measure(name: str, *args: str) -> tuple[int, int]:
    """Run this script on model `name` (and a quantization) in a fresh process: (growth, kept)."""
    out = subprocess.run(
        [sys.executable, __file__, name, *args],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parent.parent,
    )
    growth, kept = map(int, out.stdout.split())
    return growth, kept


def status_bytes(key: str) -> int:
    """VmRSS (now) or VmHWM (peak) of this process. Not ru_maxrss: Linux carries that across
    fork+exec, so a child of a big pytest process would report its parent's peak."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{key} not in /proc/self/status")


def main() -> None:
    import torch  # (imported before measuring so the baseline holds the libraries)

    from brainwork.loader.decoder import load_decoder
    from brainwork.quant.float_linear import FloatLinear
    from brainwork.store import resolve_model

    resolved = resolve_model(sys.argv[1], progress=False)
    before = status_bytes("VmRSS")
    loaded = load_decoder(resolved, progress=False, quantization=sys.argv[2] if len(sys.argv) > 2 else "none")
    peak = status_bytes("VmHWM")
    tensors = [*loaded.model.parameters(), *loaded.model.buffers()]
    weights = sum(t.numel() * t.element_size() for t in tensors)
    # weights held in oneDNN's blocked layout (FloatLinear.pack), or blocked in place (a tied
    # head's table, FloatLinear.block_in_place), are neither
    linears = [m for m in loaded.model.modules() if isinstance(m, FloatLinear)]
    weights += sum(torch.ops.mkldnn._nbytes(m.packed) for m in linears if m.packed is not None)
    weights += sum(m.blocks.numel() * m.blocks.element_size() for m in linears if m.blocks is not None)
    print(peak - before, weights)


if __name__ == "__main__":
    main()
