"""Tiny random-weight BERT-family checkpoints for the encoder tests, written from a config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

VOCAB = 96
# Ids 0 and 1 are pads (BERT/DistilBERT pad with 0, RoBERTa with 1), so no word maps to them.
SPECIALS = {"[PAD]": 0, "<pad>": 1, "[CLS]": 2, "[SEP]": 3, "[UNK]": 4}
FIRST_WORD = len(SPECIALS)

# case name -> (transformers model class name, config overrides)
ARCHS: dict[str, tuple[str, dict[str, Any]]] = {
    "bert": ("BertModel", {}),
    "bert-cls": ("BertForSequenceClassification", {"num_labels": 3}),
    "bert-gelu-new": ("BertModel", {"hidden_act": "gelu_new", "layer_norm_eps": 1e-5}),
    "bert-mlm": ("BertForMaskedLM", {}),
    "roberta": ("RobertaModel", {"type_vocab_size": 1, "layer_norm_eps": 1e-5}),
    "roberta-cls": ("RobertaForSequenceClassification", {"id2label": {0: "neg", 1: "pos"}}),
    "distilbert": ("DistilBertModel", {}),
    "distilbert-cls": ("DistilBertForSequenceClassification", {"num_labels": 4, "activation": "relu"}),
    # an NLI head whose entailment label is not the last, as in MNLI checkpoints
    "bert-nli": (
        "BertForSequenceClassification",
        {
            "id2label": {0: "ENTAILMENT", 1: "neutral", 2: "contradiction"},
            "label2id": {"ENTAILMENT": 0, "neutral": 1, "contradiction": 2},
        },
    ),
    "cross-encoder": ("BertForSequenceClassification", {"num_labels": 1}),
}


def write_tokenizer(folder: Path, max_length: int | None = None) -> None:
    """A word-level tokenizer.json over words `w5 .. wN` that wraps input in [CLS] ... [SEP]."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    vocab = {**SPECIALS, **{f"w{i}": i for i in range(FIRST_WORD, VOCAB)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 2), ("[SEP]", 3)],
    )
    if max_length is not None:  # like published tokenizer.json files that carry a truncation
        tok.enable_truncation(max_length=max_length)
        tok.enable_padding(pad_id=0, pad_token="[PAD]", length=max_length)
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "PreTrainedTokenizerFast", "pad_token": "[PAD]", "model_max_length": 512})
    )


def make_encoder(folder: Path, case: str, **overrides: Any) -> torch.nn.Module:
    """Save a random model of `case` (a key of ARCHS) and a tokenizer to `folder`; return it."""
    import transformers as tf

    class_name, case_overrides = ARCHS[case]
    model_class = getattr(tf, class_name)
    # A wide init so attention mixes tokens strongly: every input token then moves the [CLS]
    # state, and a wrong mask, position or pooled token shows in the outputs.
    settings = {"initializer_range": 0.3, **case_overrides, **overrides}
    torch.manual_seed(0)
    # overrides may change the sizes too (head_dim 32 takes the C attention kernel; 12 does not)
    if class_name.startswith("DistilBert"):
        sizes = {"dim": 48, "n_layers": 2, "n_heads": 4, "hidden_dim": 80}
        cfg = tf.DistilBertConfig(vocab_size=VOCAB, max_position_embeddings=64, **(sizes | settings))
    else:
        config_class = tf.RobertaConfig if class_name.startswith("Roberta") else tf.BertConfig
        sizes = {"hidden_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 80}
        cfg = config_class(vocab_size=VOCAB, max_position_embeddings=64, **(sizes | settings))
    model = model_class(cfg)
    # Random norms and biases too, so a dropped bias or a wrong LayerNorm shows in the outputs.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm" in name or "layer_norm" in name or name.endswith("bias"):
                p.normal_(0.0, 0.5)
    model.eval()
    model.save_pretrained(folder, safe_serialization=True)
    write_tokenizer(folder)
    return model


def random_sentences(lengths: list[int], seed: int = 0) -> list[str]:
    """One sentence of made-up words per requested word count."""
    g = torch.Generator().manual_seed(seed)
    return [" ".join(f"w{int(i)}" for i in torch.randint(FIRST_WORD, VOCAB, (n,), generator=g)) for n in lengths]


def token_ids(text: str) -> list[int]:
    """What the tiny tokenizer makes of `text`: [CLS] words [SEP]."""
    return [2, *(int(w[1:]) for w in text.split()), 3]
