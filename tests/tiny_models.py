"""Tiny random-weight Hugging Face checkpoints, written by the tests from a config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

VOCAB = 128


def write_tokenizer(folder: Path, vocab_size: int = VOCAB) -> None:
    """A word-level tokenizer.json over `vocab_size` made-up words `w0 .. wN`."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {f"w{i}": i for i in range(vocab_size)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="w0"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(folder / "tokenizer.json"))


def make_checkpoint(folder: Path, arch: str, **overrides: Any) -> Any:
    """Save a random `arch` model (llama, qwen2, mistral, gemma3, gpt2) to `folder`; return it."""
    import transformers as tf

    torch.manual_seed(0)
    common = dict(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
    )
    if arch == "gpt2":
        cfg = tf.GPT2Config(vocab_size=VOCAB, n_embd=64, n_layer=3, n_head=4, n_positions=256, **overrides)
        model = tf.GPT2LMHeadModel(cfg)
    elif arch == "gemma3":
        cfg = tf.Gemma3TextConfig(
            **{**common, "head_dim": 32, "sliding_window": 6, "query_pre_attn_scalar": 24, **overrides}
        )
        # eager: transformers' SDPA path silently ignores attention soft-capping
        cfg._attn_implementation = "eager"
        model = tf.Gemma3ForCausalLM(cfg)
    else:
        cls = {
            "llama": (tf.LlamaConfig, tf.LlamaForCausalLM),
            "qwen2": (tf.Qwen2Config, tf.Qwen2ForCausalLM),
            "mistral": (tf.MistralConfig, tf.MistralForCausalLM),
        }[arch]
        cfg = cls[0](**{**common, **overrides})
        model = cls[1](cfg)
    # random norms and biases too, so a wrong offset or a dropped bias shows in the logits
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith("bias") or "ln_" in name:
                p.normal_(0.0, 0.5)
    model.eval()
    model.save_pretrained(folder, safe_serialization=True)
    write_tokenizer(folder)
    return model
