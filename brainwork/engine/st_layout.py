"""What a sentence-transformers folder adds on top of a Hugging Face model folder.

`modules.json` lists the pipeline: a Transformer module (whose files may sit in a subfolder),
a Pooling module (`<path>/config.json`), optionally Normalize. `sentence_bert_config.json`
next to the transformer gives `max_seq_length` and `do_lower_case`. This module reads those
files the way sentence-transformers does, and the model's length limit when there is none.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from brainwork.errors import ModelFormatError
from brainwork.layers.pooling import POOLING_MODES
from brainwork.models.encoder_config import EncoderConfig

# Legacy Pooling config keys, in the order sentence-transformers concatenates their outputs.
_LEGACY_POOLING_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
# transformers writes this sentinel (int(1e30)) as model_max_length when a tokenizer has none.
_NO_LIMIT = 10**20


@dataclass(frozen=True)
class SentenceTransformerLayout:
    model_dir: Path  # folder of the Transformer module: config.json, weights, tokenizer
    pooling_modes: tuple[str, ...] | None  # None: the pipeline has no Pooling module
    normalize: bool
    max_seq_length: int | None
    do_lower_case: bool


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ModelFormatError(f"cannot read {path}: {e}") from e


def read_layout(folder: Path) -> SentenceTransformerLayout | None:
    """The sentence-transformers pipeline of `folder`, or None when it has no modules.json."""
    modules_file = folder / "modules.json"
    if not modules_file.is_file():
        return None
    modules = _read_json(modules_file)
    if not isinstance(modules, list) or not modules:
        raise ModelFormatError(f"{modules_file} must be a non-empty list of modules")
    model_dir: Path | None = None
    pooling: tuple[str, ...] | None = None
    normalize = False
    for module in sorted(modules, key=lambda m: m.get("idx", 0)):
        kind = str(module.get("type", "")).rsplit(".", 1)[-1]
        path = folder / str(module.get("path", ""))
        if kind == "Transformer" and model_dir is None:
            model_dir = path
        elif kind == "Pooling":
            pooling = _pooling_modes(_read_json(path / "config.json"), path / "config.json")
        elif kind == "Normalize":
            normalize = True
        else:
            raise ModelFormatError(
                f"{modules_file}: module type {module.get('type')!r} is not supported "
                "(brainwork runs Transformer, Pooling and Normalize)"
            )
    if model_dir is None:
        raise ModelFormatError(f"{modules_file} has no Transformer module")

    sbert: dict[str, Any] = {}
    sbert_file = model_dir / "sentence_bert_config.json"
    if sbert_file.is_file():
        sbert = _read_json(sbert_file)
    max_seq_length = sbert.get("max_seq_length")
    if max_seq_length is not None and (not isinstance(max_seq_length, int) or max_seq_length <= 0):
        raise ModelFormatError(f"{sbert_file}: max_seq_length must be a positive integer")
    return SentenceTransformerLayout(
        model_dir=model_dir,
        pooling_modes=pooling,
        normalize=normalize,
        max_seq_length=max_seq_length,
        do_lower_case=bool(sbert.get("do_lower_case", False)),
    )


def _pooling_modes(config: dict[str, Any], source: Path) -> tuple[str, ...]:
    """Pooling modes from a current (`pooling_mode`) or legacy (`pooling_mode_*`) config."""
    mode = config.get("pooling_mode")
    if mode is not None:
        modes = (mode,) if isinstance(mode, str) else tuple(mode)
    else:
        modes = tuple(m for key, m in _LEGACY_POOLING_KEYS.items() if config.get(key))
        modes = modes or ("mean",)  # sentence-transformers' default when no flag is set
    for m in modes:
        if m not in POOLING_MODES:
            raise ModelFormatError(f"{source}: unknown pooling mode {m!r}")
    return modes


def tokenizer_max_length(model_dir: Path, cfg: EncoderConfig) -> int:
    """The tokenizer's model_max_length (tokenizer_config.json), capped by the position table."""
    limit = cfg.max_length
    config_file = model_dir / "tokenizer_config.json"
    if config_file.is_file():
        declared = _read_json(config_file).get("model_max_length")
        if isinstance(declared, (int, float)) and 0 < declared < _NO_LIMIT:
            limit = min(limit, int(declared))
    return limit
