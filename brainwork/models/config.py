"""`ModelConfig`: a decoder's hyper-parameters, normalised once from HF config.json or GGUF metadata.

Model code reads these fields directly and never guesses defaults; every format-specific key
name and default lives here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from brainwork.errors import ModelFormatError


@dataclass(frozen=True)
class RopeConfig:
    theta: float = 10000.0
    type: str = "default"  # default | linear | llama3 | yarn
    factor: float = 1.0
    original_max_position: int | None = None
    low_freq_factor: float = 1.0  # llama3
    high_freq_factor: float = 4.0  # llama3
    beta_fast: float = 32.0  # yarn
    beta_slow: float = 1.0  # yarn
    attention_factor: float | None = None  # yarn: scales cos/sin

    def __post_init__(self) -> None:
        if self.type not in ("default", "linear", "llama3", "yarn"):
            raise ModelFormatError(f"rope scaling type {self.type!r} is not supported")


@dataclass(frozen=True)
class ModelConfig:
    architecture: str  # family key in the registry: llama, qwen2, mistral, gemma3, gpt2
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    max_position_embeddings: int
    norm_eps: float
    hidden_act: str = "silu"
    attention_bias: bool = False  # bias on q/k/v (Qwen2, Llama with attention_bias)
    attention_out_bias: bool = False  # bias on o_proj (Llama with attention_bias; not Qwen2)
    mlp_bias: bool = False
    tie_word_embeddings: bool = False
    rope: RopeConfig = field(default_factory=RopeConfig)
    rope_local: RopeConfig | None = None  # Gemma 3: RoPE of the sliding-window layers
    layer_windows: tuple[int | None, ...] = ()  # per layer: sliding window or None (full)
    attn_scale: float | None = None  # None -> head_dim ** -0.5
    final_logit_softcap: float | None = None
    embedding_scale: float | None = None  # Gemma: sqrt(hidden_size)
    bos_token_id: int | None = None
    eos_token_ids: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.num_heads % self.num_kv_heads:
            raise ModelFormatError(f"num_heads={self.num_heads} is not a multiple of num_kv_heads={self.num_kv_heads}")
        if len(self.layer_windows) != self.num_layers:
            raise ModelFormatError(f"layer_windows has {len(self.layer_windows)} entries for {self.num_layers} layers")

    @property
    def scale(self) -> float:
        return self.attn_scale if self.attn_scale is not None else self.head_dim**-0.5

    # ---- Hugging Face config.json -------------------------------------------------------
    @classmethod
    def from_hf(cls, d: dict[str, Any]) -> ModelConfig:
        model_type = d.get("model_type", "")
        if model_type == "gemma3" and "text_config" in d:  # multimodal wrapper: use its text tower
            d = {**d["text_config"], "model_type": "gemma3_text"}
            model_type = "gemma3_text"
        if model_type == "gpt2":
            return _gpt2_from_hf(d)
        family = {"llama": "llama", "qwen2": "qwen2", "mistral": "mistral", "gemma3_text": "gemma3"}.get(model_type)
        if family is None:
            raise ModelFormatError(f"model_type {model_type!r} is not supported")
        n_layers = d["num_hidden_layers"]
        n_heads = d["num_attention_heads"]
        hidden = d["hidden_size"]
        head_dim = d.get("head_dim") or hidden // n_heads
        rope, rope_local = _hf_rope(d, family)
        eos = d.get("eos_token_id")
        common = dict(
            vocab_size=d["vocab_size"],
            hidden_size=hidden,
            intermediate_size=d["intermediate_size"],
            num_layers=n_layers,
            num_heads=n_heads,
            num_kv_heads=d.get("num_key_value_heads") or n_heads,
            head_dim=head_dim,
            max_position_embeddings=d.get("max_position_embeddings", 2048),
            norm_eps=d.get("rms_norm_eps", 1e-6),
            tie_word_embeddings=d.get("tie_word_embeddings", family == "gemma3"),
            rope=rope,
            rope_local=rope_local,
            layer_windows=_hf_windows(d, family, n_layers),
            bos_token_id=d.get("bos_token_id"),
            eos_token_ids=tuple(eos) if isinstance(eos, list) else ((eos,) if eos is not None else ()),
        )
        if family == "gemma3":
            return cls(
                architecture=family,
                hidden_act=d.get("hidden_activation") or "gelu_pytorch_tanh",
                attention_bias=d.get("attention_bias", False),
                attention_out_bias=d.get("attention_bias", False),
                attn_scale=d.get("query_pre_attn_scalar", head_dim) ** -0.5,
                final_logit_softcap=d.get("final_logit_softcapping"),
                embedding_scale=math.sqrt(hidden),
                **common,
            )
        return cls(
            architecture=family,
            hidden_act=d.get("hidden_act", "silu"),
            attention_bias=d.get("attention_bias", family == "qwen2"),
            attention_out_bias=family != "qwen2" and d.get("attention_bias", False),
            mlp_bias=d.get("mlp_bias", False),
            **common,
        )

    # ---- GGUF metadata -------------------------------------------------------------------
    @classmethod
    def from_gguf(cls, md: dict[str, Any], tensor_names: set[str]) -> ModelConfig:
        arch = md.get("general.architecture", "")
        if arch not in ("llama", "qwen2", "gemma3"):
            raise ModelFormatError(f"GGUF architecture {arch!r} is not supported (supported: llama, qwen2, gemma3)")

        def get(key: str, default: Any = None) -> Any:
            return md.get(f"{arch}.{key}", default)

        if "rope_freqs.weight" in tensor_names:
            raise ModelFormatError("GGUF rope_freqs tensors (Llama 3.1 RoPE scaling) are not supported yet")
        n_layers = get("block_count")
        hidden = get("embedding_length")
        n_heads = get("attention.head_count")
        head_dim = get("attention.key_length") or hidden // n_heads
        n_vocab = get("vocab_size") or len(md.get("tokenizer.ggml.tokens", ()))
        rope = RopeConfig(theta=get("rope.freq_base", 10000.0), **_gguf_rope_scaling(get))
        tied = "output.weight" not in tensor_names
        eos = [md.get(k) for k in ("tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id")]
        common = dict(
            vocab_size=n_vocab,
            hidden_size=hidden,
            intermediate_size=get("feed_forward_length"),
            num_layers=n_layers,
            num_heads=n_heads,
            num_kv_heads=get("attention.head_count_kv") or n_heads,
            head_dim=head_dim,
            max_position_embeddings=get("context_length", 2048),
            norm_eps=get("attention.layer_norm_rms_epsilon", 1e-6),
            tie_word_embeddings=tied,
            rope=rope,
            bos_token_id=md.get("tokenizer.ggml.bos_token_id"),
            eos_token_ids=tuple(dict.fromkeys(e for e in eos if e is not None)),
        )
        if arch == "gemma3":
            window = get("attention.sliding_window")
            # llama.cpp and HF: every 6th layer is global, the rest slide over `window` tokens
            windows = tuple(None if (i + 1) % 6 == 0 else window for i in range(n_layers))
            return cls(
                architecture="gemma3",
                hidden_act="gelu_pytorch_tanh",
                rope_local=RopeConfig(theta=10000.0),
                layer_windows=windows,
                attn_scale=head_dim**-0.5,
                embedding_scale=math.sqrt(hidden),
                **common,
            )
        window = get("attention.sliding_window")
        return cls(
            architecture=arch,
            attention_bias=arch == "qwen2",
            layer_windows=(window,) * n_layers,
            **common,
        )


def _hf_rope(d: dict[str, Any], family: str) -> tuple[RopeConfig, RopeConfig | None]:
    """Both the transformers v5 `rope_parameters` and the older `rope_theta`/`rope_scaling`."""
    params = d.get("rope_parameters")
    if family == "gemma3":
        if params and "full_attention" in params:
            return _rope(params["full_attention"]), _rope(params["sliding_attention"])
        glob = {"rope_theta": d.get("rope_theta", 1_000_000.0), **(d.get("rope_scaling") or {})}
        return _rope(glob), RopeConfig(theta=d.get("rope_local_base_freq", 10000.0))
    if params:
        return _rope(params), None
    return _rope({"rope_theta": d.get("rope_theta", 10000.0), **(d.get("rope_scaling") or {})}), None


def _rope(p: dict[str, Any]) -> RopeConfig:
    rtype = p.get("rope_type") or p.get("type") or "default"
    return RopeConfig(
        theta=float(p.get("rope_theta", 10000.0)),
        type=rtype,
        factor=float(p.get("factor", 1.0)),
        original_max_position=p.get("original_max_position_embeddings"),
        low_freq_factor=float(p.get("low_freq_factor", 1.0)),
        high_freq_factor=float(p.get("high_freq_factor", 4.0)),
        beta_fast=float(p.get("beta_fast", 32.0)),
        beta_slow=float(p.get("beta_slow", 1.0)),
        attention_factor=p.get("attention_factor"),
    )


def _hf_windows(d: dict[str, Any], family: str, n_layers: int) -> tuple[int | None, ...]:
    window = d.get("sliding_window")
    types = d.get("layer_types")
    if family == "mistral":
        return (window,) * n_layers
    if family == "qwen2" and not d.get("use_sliding_window", False):
        return (None,) * n_layers
    if types:
        return tuple(window if t == "sliding_attention" else None for t in types)
    if family == "gemma3":
        pattern = d.get("sliding_window_pattern", d.get("_sliding_window_pattern", 6))
        return tuple(None if (i + 1) % pattern == 0 else window for i in range(n_layers))
    return (None,) * n_layers


def _gguf_rope_scaling(get: Any) -> dict[str, Any]:
    kind = get("rope.scaling.type")
    if kind in (None, "none"):
        return {}
    factor = get("rope.scaling.factor", 1.0)
    orig = get("rope.scaling.original_context_length")
    if kind == "linear":
        return {"type": "linear", "factor": factor}
    if kind == "yarn":
        return {"type": "yarn", "factor": factor, "original_max_position": orig}
    raise ModelFormatError(f"GGUF rope.scaling.type {kind!r} is not supported")


def _gpt2_from_hf(d: dict[str, Any]) -> ModelConfig:
    hidden = d.get("n_embd", 768)
    n_heads = d.get("n_head", 12)
    n_layers = d.get("n_layer", 12)
    eos = d.get("eos_token_id")
    return ModelConfig(
        architecture="gpt2",
        vocab_size=d.get("vocab_size", 50257),
        hidden_size=hidden,
        intermediate_size=d.get("n_inner") or 4 * hidden,
        num_layers=n_layers,
        num_heads=n_heads,
        num_kv_heads=n_heads,
        head_dim=hidden // n_heads,
        max_position_embeddings=d.get("n_positions", 1024),
        norm_eps=d.get("layer_norm_epsilon", 1e-5),
        hidden_act=d.get("activation_function", "gelu_new"),
        attention_bias=True,
        attention_out_bias=True,
        mlp_bias=True,
        tie_word_embeddings=d.get("tie_word_embeddings", True),
        layer_windows=(None,) * n_layers,
        attn_scale=(hidden // n_heads) ** -0.5 if d.get("scale_attn_weights", True) else 1.0,
        bos_token_id=d.get("bos_token_id"),
        eos_token_ids=(eos,) if eos is not None else (),
    )
