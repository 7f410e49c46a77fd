"""`brainwork models`: the catalog and what of it is installed, read from file headers only.

It must answer in about a second, so it never imports torch, never dequantizes, and never joins
split files (a model in parts shows the parts' total size until its first use joins them).
"""

from __future__ import annotations

import argparse
import json
import math
import struct
from dataclasses import asdict, dataclass
from pathlib import Path

from gguf import LlamaFileType

from brainwork.catalog import CATALOG, CatalogEntry
from brainwork.errors import BrainworkError
from brainwork.store import cache_dir, detect_format, package_file


@dataclass
class ModelRow:
    name: str
    task: str
    installed: bool
    architecture: str | None = None
    parameters: int | None = None
    quantization: str | None = None
    size_bytes: int | None = None
    path: str | None = None
    status: str = ""  # "installed", "parts installed (joined on first use)" or "not installed: <pip line>"
    pip: str = ""


def human_count(n: int | None) -> str:
    """135_000_000 -> '135M'; three significant digits."""
    if n is None:
        return "-"
    for div, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= div:
            x = n / div
            return f"{x:.{max(0, 2 - int(math.log10(x)))}f}{unit}"
    return str(n)


def human_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    for div, unit in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if n >= div:
            return f"{n / div:.1f} {unit}"
    return f"{n} B"


def _gguf_info(path: Path) -> tuple[str, int, str]:
    # GGUFContainer, not GGUFFile: the latter's module imports torch, which alone takes ~2.5 s
    from brainwork.loader.gguf_reader import GGUFContainer

    f = GGUFContainer(path)
    ftype = f.metadata.get("general.file_type")
    try:
        quant = LlamaFileType(ftype).name.removeprefix("MOSTLY_")
    except ValueError:  # no file type recorded (or a new one): name the commonest tensor type
        types = [t.qtype.name for t in f.tensors]
        quant = max(set(types), key=types.count) if types else "-"
    params = sum(t.n_elements for t in f.tensors)
    return str(f.metadata.get("general.architecture", "?")), params, quant


def _hf_info(folder: Path) -> tuple[str, int, str]:
    from safetensors import safe_open

    # a sentence-transformers folder may keep the transformer in a subfolder
    config = next((p for p in (folder / "config.json", *folder.glob("*/config.json")) if p.is_file()), None)
    model_type = json.loads(config.read_text())["model_type"] if config else "?"
    params, dtypes = 0, set()
    for st in sorted(folder.rglob("*.safetensors")):
        with safe_open(str(st), framework="numpy") as f:
            for key in f.keys():  # noqa: SIM118 - safe_open handles are not iterable
                s = f.get_slice(key)
                if s.get_dtype().startswith(("I", "U", "BOOL")):
                    continue  # integer buffers (BERT's position_ids) are not parameters
                params += math.prod(s.get_shape())
                dtypes.add(s.get_dtype())
    return model_type, params, "/".join(sorted(dtypes)) or "-"


def _folder_size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def describe(entry: CatalogEntry) -> ModelRow:
    row = ModelRow(entry.name, entry.task, installed=False, pip=entry.pip_line)
    try:
        sources = [package_file(entry, i) for i in range(len(entry.files))]
    except BrainworkError:
        row.status = f"not installed: {entry.pip_line}"
        return row
    row.installed, row.status, path = True, "installed", sources[0]
    joined = cache_dir() / entry.joined_name if entry.joined_name else None
    if joined is not None and joined.is_file() and joined.with_name(joined.name + ".ok").is_file():
        path = joined
    elif joined is not None:
        # Not joined yet. The GGUF header (metadata and tensor table) sits at the start of part 1,
        # so its description can still be read there.
        row.status = "parts installed (joined on first use)"
        row.size_bytes = sum(p.stat().st_size for p in sources)
    row.path = str(path)
    row.size_bytes = row.size_bytes or _folder_size(path)
    try:
        if entry.format == "gguf":
            row.architecture, row.parameters, row.quantization = _gguf_info(path)
        elif entry.format == "hf" and detect_format(path) == "hf":  # a ct2 folder has a config.json too
            row.architecture, row.parameters, row.quantization = _hf_info(path)
        elif entry.format in ("onnx", "ct2", "torch"):  # speech and image models
            from brainwork.media_info import media_info

            row.architecture, row.parameters, row.quantization = media_info(entry.format, path)
    except (BrainworkError, ValueError, OSError, struct.error) as exc:
        row.status += f" (header unreadable: {exc})"
    return row


def cmd_models(args: argparse.Namespace) -> int:
    rows = [describe(e) for e in CATALOG.values()]
    if args.json:
        print(json.dumps([asdict(r) for r in rows], indent=2))
        return 0
    table = [("NAME", "TASK", "ARCH", "PARAMS", "QUANT", "SIZE", "WHERE")]
    for r in rows:
        where = r.path if r.status == "installed" else f"{r.status}" + (f" ({r.path})" if r.path else "")
        table.append(
            (
                r.name,
                r.task,
                r.architecture or "-",
                human_count(r.parameters),
                r.quantization or "-",
                human_bytes(r.size_bytes),
                where,
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]) - 1)]
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[-1])
    return 0
