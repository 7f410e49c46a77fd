"""Write a tiny random Llama as a GGUF file the way llama.cpp's converter does (Q/K permuted)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from gguf import GGMLQuantizationType, GGUFWriter, quants

from tests.tiny_models import VOCAB

_NAMES = {
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's convert_hf_to_gguf permutation of Q/K rows for its interleaved RoPE."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_llama_gguf(
    path: Path,
    hf_model,
    qtype: GGMLQuantizationType,
    arch: str = "llama",
    qtype_for: Callable[[str], GGMLQuantizationType] | None = None,
) -> None:
    """`qtype_for(gguf_name)`, if given, picks each matrix's type (mixed files, like llama.cpp's)."""
    cfg = hf_model.config
    w = GGUFWriter(str(path), arch)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_rope_freq_base(float(cfg.rope_parameters["rope_theta"]))
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_vocab_size(VOCAB)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")
    w.add_token_list([f"t{i}" for i in range(VOCAB)])
    w.add_token_types([1] * VOCAB)
    w.add_token_merges([])
    tied = cfg.tie_word_embeddings
    for name, t in hf_model.state_dict().items():
        if tied and name == "lm_head.weight":
            continue  # a tied head is not written; readers reuse token_embd
        arr = t.float().numpy()
        if name.startswith("model.layers."):
            _, _, layer, *rest = name.split(".")
            stem, kind = ".".join(rest[:-1]), rest[-1]
            if stem == "self_attn.q_proj":
                arr = _permute(arr, cfg.num_attention_heads)
            elif stem == "self_attn.k_proj":
                arr = _permute(arr, cfg.num_key_value_heads)
            gname = f"blk.{layer}.{_NAMES[stem]}.{kind}"
        else:
            gname = {
                "model.embed_tokens.weight": "token_embd.weight",
                "model.norm.weight": "output_norm.weight",
                "lm_head.weight": "output.weight",
            }[name]
        kind = qtype_for(gname) if qtype_for is not None and arr.ndim == 2 else qtype
        if arr.ndim == 2 and kind != GGMLQuantizationType.F32:
            data = quants.quantize(arr, kind)
            w.add_tensor(gname, data, raw_shape=data.shape, raw_dtype=kind)
        else:
            w.add_tensor(gname, arr)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def dequantized_copy(hf_model, qtype: GGMLQuantizationType):
    """The HF model with every matrix rounded through `qtype`, as a GGUF reader would see it."""
    with torch.no_grad():
        for _name, p in hf_model.named_parameters():
            if p.ndim == 2 and qtype != GGMLQuantizationType.F32:
                q = quants.quantize(p.float().numpy(), qtype)
                p.copy_(torch.from_numpy(quants.dequantize(q, qtype).reshape(p.shape)))
    return hf_model
