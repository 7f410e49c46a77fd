"""Checkpoint tensor names of the BERT family -> parameter names of `brainwork.models.bert`.

One module tree serves BERT, RoBERTa and DistilBERT, so each family's Hugging Face names are
mapped onto it here. Names may carry the task-model prefix (`bert.`, `roberta.`,
`distilbert.`) or not (base models, sentence-transformers folders). A name that maps to
nothing (`cls.predictions.*`, `embeddings.position_ids`, ...) is unused and returns None.
"""

from __future__ import annotations

import re

from brainwork.models.encoder_config import Family

_PREFIXES = ("bert.", "roberta.", "distilbert.")

_EMBEDDINGS = {
    "embeddings.word_embeddings": "embeddings.word",
    "embeddings.position_embeddings": "embeddings.position",
    "embeddings.token_type_embeddings": "embeddings.token_type",
    "embeddings.LayerNorm": "embeddings.norm",
}

_BERT_LAYER = {
    "attention.self.query": "q",
    "attention.self.key": "k",
    "attention.self.value": "v",
    "attention.output.dense": "o",
    "attention.output.LayerNorm": "attn_norm",
    "intermediate.dense": "up",
    "output.dense": "down",
    "output.LayerNorm": "mlp_norm",
}

_DISTILBERT_LAYER = {
    "attention.q_lin": "q",
    "attention.k_lin": "k",
    "attention.v_lin": "v",
    "attention.out_lin": "o",
    "sa_layer_norm": "attn_norm",
    "ffn.lin1": "up",
    "ffn.lin2": "down",
    "output_layer_norm": "mlp_norm",
}

# Sequence-classification heads: all three are out(act(dense(h[:, 0]))) under different names.
# BERT's `pooler.dense` is only the head's first layer when the checkpoint has a classifier;
# `BertEncoder` has no `head.*` parameters otherwise, so the pooler is then skipped.
_HEADS: dict[Family, dict[str, str]] = {
    "bert": {"pooler.dense": "head.dense", "classifier": "head.out"},
    "roberta": {"classifier.dense": "head.dense", "classifier.out_proj": "head.out"},
    "distilbert": {"pre_classifier": "head.dense", "classifier": "head.out"},
}

_LAYER_RE = re.compile(r"^(encoder|transformer)\.layer\.(\d+)\.(.+)$")
# Old TensorFlow-converted checkpoints name LayerNorm parameters gamma/beta.
_LEAF_RENAMES = {"weight": "weight", "bias": "bias", "gamma": "weight", "beta": "bias"}


def internal_name(name: str, family: Family) -> str | None:
    """The `BertEncoder` parameter a checkpoint tensor fills, or None when it is not used."""
    for prefix in _PREFIXES:
        if name.startswith(prefix):
            name = name[len(prefix) :]
            break
    module, _, leaf = name.rpartition(".")
    if leaf not in _LEAF_RENAMES:
        return None
    leaf = _LEAF_RENAMES[leaf]

    if module in _EMBEDDINGS:
        return f"{_EMBEDDINGS[module]}.{leaf}"
    if module in _HEADS[family]:
        return f"{_HEADS[family][module]}.{leaf}"
    match = _LAYER_RE.match(module)
    if match is None:
        return None
    container, index, rest = match.groups()
    table = _DISTILBERT_LAYER if family == "distilbert" else _BERT_LAYER
    expected_container = "transformer" if family == "distilbert" else "encoder"
    if container != expected_container or rest not in table:
        return None
    return f"layers.{index}.{table[rest]}.{leaf}"


def checkpoint_name(param: str, family: Family) -> str:
    """The Hugging Face name (without task prefix) of a `BertEncoder` parameter, for messages."""
    module, _, leaf = param.rpartition(".")
    for table in (_EMBEDDINGS, _HEADS[family]):
        for hf_name, ours in table.items():
            if ours == module:
                return f"{hf_name}.{leaf}"
    _, index, ours = module.split(".", 2)  # "layers.<i>.<name>"
    table = _DISTILBERT_LAYER if family == "distilbert" else _BERT_LAYER
    container = "transformer" if family == "distilbert" else "encoder"
    hf_rest = next(hf for hf, mine in table.items() if mine == ours)
    return f"{container}.layer.{index}.{hf_rest}.{leaf}"
