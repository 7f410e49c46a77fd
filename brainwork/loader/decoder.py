"""Build a decoder model and its tokenizer from a resolved model: meta device, then assign once."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm import tqdm

from brainwork.errors import ModelFormatError
from brainwork.loader.gguf import GGUFFile
from brainwork.loader.safetensors import iter_safetensors
from brainwork.models.base import materialize_buffers
from brainwork.models.config import ModelConfig
from brainwork.models.registry import decoder_class
from brainwork.numerics.apply import ggml_weight_stream, to_ggml_numerics
from brainwork.quant.float_linear import float_linears, pack_float_linears
from brainwork.quant.modes import check_quantization
from brainwork.quant.transform import fuse_projections, gguf_weight_stream, quantize_linears
from brainwork.store import ResolvedModel
from brainwork.tokenizer.tokenizer import Tokenizer


@dataclass
class LoadedDecoder:
    model: nn.Module
    config: ModelConfig
    tokenizer: Tokenizer
    quantization: str  # what the file held, e.g. "Q4_1" or "bf16"
    kept: dict[str, int] = field(default_factory=dict)  # how matrices are held: {"int4-exact": 210, ...}


def load_decoder(
    resolved: ResolvedModel, dtype: torch.dtype = torch.float32, progress: bool = True, quantization: str = "none"
) -> LoadedDecoder:
    """`quantization` (see `brainwork.quant.modes`): "none" dequantizes every weight to `dtype`
    (the reference path the parity tests use); "auto" keeps a GGUF file's 4- and 8-bit blocks
    packed; "int8"/"int4" requantize any model's matrices. `LLM` defaults to "none" too."""
    check_quantization(quantization)
    if quantization == "ggml":
        if resolved.format != "gguf":
            raise ValueError(
                f"quantization='ggml' reproduces llama.cpp's arithmetic on GGUF files; {resolved.path} is not one"
            )
        return _load_ggml(resolved, progress)
    if resolved.format == "gguf":
        loaded = _load_gguf(resolved, dtype, progress, quantization)
    else:
        loaded = _load_hf(resolved, dtype, progress)
        if quantization in ("int8", "int4"):
            loaded.kept = quantize_linears(loaded.model, quantization)
    counts = {
        "fused groups": fuse_projections(loaded.model),
        # float32 matrices (all of them with "none"; else the head, odd widths) on the fastest
        # CPU path per batch size (brainwork.quant.float_linear)
        "float32 fast path": float_linears(loaded.model),
    }
    # quantized models' float heads keep the arithmetic their llama.cpp parity was measured on;
    # BRAINWORK_PACK=0 keeps plain weights (to compare, or where oneDNN misbehaves)
    if quantization == "none" and os.environ.get("BRAINWORK_PACK", "1") != "0":
        counts["float32 packed for oneDNN"] = pack_float_linears(loaded.model)
    loaded.kept.update({k: n for k, n in counts.items() if n})
    return loaded


def _build(config: ModelConfig) -> nn.Module:
    cls = decoder_class(config.architecture)
    with torch.device("meta"):
        model = cls(config)
    return model


def _finish(model: nn.Module) -> nn.Module:
    materialize_buffers(model)
    return model.eval()


def _load_gguf(resolved: ResolvedModel, dtype: torch.dtype, progress: bool, quantization: str) -> LoadedDecoder:
    f = GGUFFile(resolved.path)
    config = ModelConfig.from_gguf(f.metadata, {t.name for t in f.tensors})
    # the tokenizer first: its build needs transient memory that should not stack on the weights
    tokenizer = Tokenizer.from_gguf(f.metadata)
    model = _build(config)
    kept: dict[str, int] = {}
    if quantization == "none":
        tensors = f.iter_tensors(dtype)
    elif quantization == "ggml":  # quantized matrices become ggml-exact modules straight from their blocks
        tensors = ggml_weight_stream(model, f, kept)
    else:  # packed matrices are swapped into `model` as the stream passes them
        tensors = gguf_weight_stream(model, f, quantization, dtype, kept)
    stream = tqdm(
        tensors,
        total=len(f.tensors),
        desc=f"loading {resolved.name}",
        unit="tensor",
        disable=not progress,
    )
    try:
        model.load_weights(stream)
    except ModelFormatError as exc:
        raise ModelFormatError(f"{resolved.path}: {exc}") from exc
    types = f.tensor_types
    main = max((t for t in types if t not in ("F32",)), key=lambda t: types[t], default="F32")
    return LoadedDecoder(_finish(model), config, tokenizer, main, kept)


def _load_ggml(resolved: ResolvedModel, progress: bool) -> LoadedDecoder:
    """Every op in its ggml-exact form (`brainwork.numerics`), quantized matrices kept as blocks."""
    loaded = _load_gguf(resolved, torch.float32, progress, "ggml")
    to_ggml_numerics(loaded.model, GGUFFile(resolved.path), loaded.kept)  # after _finish: it resets RoPE
    return loaded


def _load_hf(resolved: ResolvedModel, dtype: torch.dtype, progress: bool) -> LoadedDecoder:
    folder = resolved.path
    raw = json.loads((folder / "config.json").read_text())
    config = ModelConfig.from_hf(raw)
    model = _build(config)
    stream = tqdm(iter_safetensors(folder), desc=f"loading {resolved.name}", unit="tensor", disable=not progress)
    try:
        model.load_weights(stream, dtype=dtype)
    except ModelFormatError as exc:
        raise ModelFormatError(f"{folder}: {exc}") from exc
    if not (folder / "tokenizer.json").is_file():
        raise ModelFormatError(f"{folder}: no tokenizer.json")
    eos = config.eos_token_ids
    gen = folder / "generation_config.json"
    if gen.is_file():
        g = json.loads(gen.read_text()).get("eos_token_id")
        eos = tuple(dict.fromkeys([*eos, *(g if isinstance(g, list) else [g] if g is not None else [])]))
    tokenizer = Tokenizer.from_folder(folder, eos)
    return LoadedDecoder(
        _finish(model), config, tokenizer, str(raw.get("torch_dtype") or raw.get("dtype") or "float32")
    )
