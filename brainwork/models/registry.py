"""Architecture name -> model class, imported only when asked for."""

from __future__ import annotations

import importlib

from torch import nn

from brainwork.errors import ModelFormatError

# ModelConfig.architecture -> (module, class)
_DECODERS: dict[str, tuple[str, str]] = {
    "llama": ("brainwork.models.llama", "CausalLM"),
    "mistral": ("brainwork.models.llama", "CausalLM"),
    "qwen2": ("brainwork.models.llama", "CausalLM"),
    "gemma3": ("brainwork.models.gemma3", "Gemma3ForCausalLM"),
    "gpt2": ("brainwork.models.gpt2", "GPT2LMHeadModel"),
}


def decoder_class(architecture: str) -> type[nn.Module]:
    if architecture not in _DECODERS:
        raise ModelFormatError(
            f"architecture {architecture!r} is not supported (supported: {', '.join(sorted(_DECODERS))})"
        )
    module, cls = _DECODERS[architecture]
    return getattr(importlib.import_module(module), cls)
