"""`EncoderConfig`: one frozen view of a Hugging Face `config.json` for the BERT encoder family.

BERT, MiniLM (a BERT checkpoint), RoBERTa and DistilBERT spell the same facts differently
(`hidden_size` vs `dim`, `hidden_act` vs `activation`, ...) and differ in a few real ways
(RoBERTa positions start after the padding index, DistilBERT has no token types and a fixed
LayerNorm eps). `EncoderConfig.from_hf` resolves all of that once, so model code reads plain
fields and never guesses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

from brainwork.errors import ModelFormatError
from brainwork.layers.activation import ACTIVATIONS

Family = Literal["bert", "roberta", "distilbert"]

# config.json `model_type` -> the architecture family that implements it.
_FAMILIES: dict[str, Family] = {"bert": "bert", "roberta": "roberta", "distilbert": "distilbert"}

_PROBLEM_TYPES = frozenset({"regression", "single_label_classification", "multi_label_classification"})
_DISTILBERT_LAYER_NORM_EPS = 1e-12  # hard-coded in transformers' DistilBERT, not in its config
_HF_DEFAULT_NUM_LABELS = 2  # PretrainedConfig's default when a config names no labels


@dataclass(frozen=True)
class EncoderConfig:
    family: Family
    model_type: str
    architectures: tuple[str, ...]
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    hidden_act: str
    layer_norm_eps: float
    max_position_embeddings: int
    type_vocab_size: int  # 0: the model has no token-type embeddings (DistilBERT)
    pad_token_id: int
    # First position id of a sequence: 0 for BERT/DistilBERT, padding_idx + 1 for RoBERTa.
    position_offset: int
    num_labels: int
    id2label: Mapping[int, str]
    label2id: Mapping[str, int]
    problem_type: str | None

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def max_length(self) -> int:
        """Longest input (special tokens included) the position table can hold."""
        return self.max_position_embeddings - self.position_offset

    @property
    def is_sequence_classifier(self) -> bool:
        return any(a.endswith("ForSequenceClassification") for a in self.architectures)

    @classmethod
    def from_hf(cls, d: Mapping[str, Any]) -> EncoderConfig:
        model_type = d.get("model_type")
        if model_type not in _FAMILIES:
            raise ModelFormatError(
                f"config.json model_type={model_type!r} is not an encoder brainwork runs; "
                f"supported: {sorted(_FAMILIES)}"
            )
        family = _FAMILIES[model_type]
        shape = _distilbert_shape(d) if family == "distilbert" else _bert_shape(d, family)
        _check_plain_encoder(d)

        hidden, heads = shape["hidden_size"], shape["num_heads"]
        if hidden % heads != 0:
            raise ModelFormatError(f"config.json hidden size {hidden} is not a multiple of the head count {heads}")
        if shape["hidden_act"] not in ACTIVATIONS:
            raise ModelFormatError(
                f"config.json activation {shape['hidden_act']!r} is not supported; supported: {sorted(ACTIVATIONS)}"
            )
        id2label, label2id = _labels(d)
        problem_type = d.get("problem_type")
        if problem_type is not None and problem_type not in _PROBLEM_TYPES:
            raise ModelFormatError(f"config.json problem_type={problem_type!r} is not one of {sorted(_PROBLEM_TYPES)}")
        pad = int(d.get("pad_token_id") if d.get("pad_token_id") is not None else shape["pad"])
        return cls(
            family=family,
            model_type=model_type,
            architectures=tuple(d.get("architectures") or ()),
            vocab_size=shape["vocab_size"],
            hidden_size=hidden,
            num_layers=shape["num_layers"],
            num_heads=heads,
            intermediate_size=shape["intermediate_size"],
            hidden_act=shape["hidden_act"],
            layer_norm_eps=shape["layer_norm_eps"],
            max_position_embeddings=int(d.get("max_position_embeddings", 512)),
            type_vocab_size=shape["type_vocab_size"],
            pad_token_id=pad,
            position_offset=pad + 1 if family == "roberta" else 0,
            num_labels=len(id2label),
            id2label=MappingProxyType(id2label),
            label2id=MappingProxyType(label2id),
            problem_type=problem_type,
        )


def _required_int(d: Mapping[str, Any], key: str) -> int:
    value = d.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ModelFormatError(f"config.json needs a positive integer {key!r}, got {value!r}")
    return value


def _bert_shape(d: Mapping[str, Any], family: Family) -> dict[str, Any]:
    return {
        "vocab_size": _required_int(d, "vocab_size"),
        "hidden_size": _required_int(d, "hidden_size"),
        "num_layers": _required_int(d, "num_hidden_layers"),
        "num_heads": _required_int(d, "num_attention_heads"),
        "intermediate_size": _required_int(d, "intermediate_size"),
        "hidden_act": d.get("hidden_act", "gelu"),
        "layer_norm_eps": float(d.get("layer_norm_eps", 1e-12)),
        "type_vocab_size": int(d.get("type_vocab_size", 2)),
        "pad": 1 if family == "roberta" else 0,  # the transformers class defaults
    }


def _distilbert_shape(d: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "vocab_size": _required_int(d, "vocab_size"),
        "hidden_size": _required_int(d, "dim"),
        "num_layers": _required_int(d, "n_layers"),
        "num_heads": _required_int(d, "n_heads"),
        "intermediate_size": _required_int(d, "hidden_dim"),
        "hidden_act": d.get("activation", "gelu"),
        "layer_norm_eps": _DISTILBERT_LAYER_NORM_EPS,
        "type_vocab_size": 0,
        "pad": 0,
    }


def _check_plain_encoder(d: Mapping[str, Any]) -> None:
    """Refuse configs that change the architecture in ways this implementation does not follow."""
    position_type = d.get("position_embedding_type", "absolute")
    if position_type != "absolute":
        raise ModelFormatError(f"config.json position_embedding_type={position_type!r}: only 'absolute' is supported")
    if d.get("is_decoder") or d.get("add_cross_attention"):
        raise ModelFormatError("config.json sets is_decoder/add_cross_attention: only plain encoders are supported")


def _labels(d: Mapping[str, Any]) -> tuple[dict[int, str], dict[str, int]]:
    """id2label/label2id as transformers' PretrainedConfig fills them (either may be null)."""
    raw = d.get("id2label")
    if raw:
        try:
            id2label = {int(k): str(v) for k, v in raw.items()}
        except (AttributeError, ValueError) as e:
            raise ModelFormatError(f"config.json id2label must map integer ids to names: {e}") from e
        if sorted(id2label) != list(range(len(id2label))):
            raise ModelFormatError(f"config.json id2label ids must be 0..n-1, got {sorted(id2label)}")
    else:
        n = d.get("num_labels", _HF_DEFAULT_NUM_LABELS)
        if not isinstance(n, int) or n <= 0:
            raise ModelFormatError(f"config.json num_labels must be a positive integer, got {n!r}")
        id2label = {i: f"LABEL_{i}" for i in range(n)}
    raw_inverse = d.get("label2id")
    if raw_inverse:
        label2id = {str(k): int(v) for k, v in raw_inverse.items()}
    else:
        label2id = {name: i for i, name in id2label.items()}
    return id2label, label2id
