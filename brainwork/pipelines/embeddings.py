"""`feature-extraction` (per-token features, as Hugging Face) and `sentence-embeddings`."""

from __future__ import annotations

from typing import Any

import numpy as np

from brainwork.catalog import DEFAULT_EMBEDDING_MODEL
from brainwork.engine.encoder import TASK_DTYPE, EncoderRunner
from brainwork.pipelines.inputs import as_text_list
from brainwork.store import resolve_model


def load_encoder(model: str | None, **kwargs: Any) -> EncoderRunner:
    resolved = resolve_model(model or DEFAULT_EMBEDDING_MODEL)
    if resolved.format != "hf":
        raise ValueError(
            f"model: {resolved.name} is a {resolved.format} file; encoder tasks need a Hugging Face folder"
        )
    return EncoderRunner(resolved.path, **{"dtype": TASK_DTYPE, **kwargs})


class SentenceEmbeddingsPipeline:
    """One pooled vector per input, normalised when the model says so (as sentence-transformers).
    `dtype` defaults to "auto": bfloat16 on CPUs that compute it natively (about twice as fast,
    cosine >= 0.9998 to the float32 vectors), float32 elsewhere; `dtype="float32"` for exact ones."""

    def __init__(self, model: str | None = None, **kwargs: Any) -> None:
        self.runner = load_encoder(model, **kwargs)

    def __call__(self, inputs: str | list[str], normalize: bool | None = None) -> np.ndarray:
        texts, single = as_text_list(inputs)
        vectors = self.runner.embed(texts, normalize=normalize).float().numpy()  # (N, D)
        return vectors[0] if single else vectors


class FeatureExtractionPipeline:
    """Last hidden states per token, nested lists shaped `[1][tokens][hidden]` per input (as HF)."""

    def __init__(self, model: str | None = None, **kwargs: Any) -> None:
        self.runner = load_encoder(model, **{"dtype": "float32", **kwargs})  # hidden states as transformers gives them

    def __call__(self, inputs: str | list[str], truncation: bool | None = None) -> Any:
        texts, single = as_text_list(inputs)
        feats = [[f.float().tolist()] for f in self.runner.features(texts, truncation=truncation)]
        return feats[0] if single else feats
