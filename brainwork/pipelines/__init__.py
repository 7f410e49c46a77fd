"""`pipeline(task, model=...)`: the Hugging Face task API, one file per task."""

from __future__ import annotations

import importlib
from typing import Any

# task name -> (module, factory); aliases point at the same factory
_TASKS: dict[str, tuple[str, str]] = {
    "text-generation": ("brainwork.pipelines.text_generation", "TextGenerationPipeline"),
    "feature-extraction": ("brainwork.pipelines.embeddings", "FeatureExtractionPipeline"),
    "sentence-embeddings": ("brainwork.pipelines.embeddings", "SentenceEmbeddingsPipeline"),
    "sentiment-analysis": ("brainwork.pipelines.text_classification", "TextClassificationPipeline"),
    "text-classification": ("brainwork.pipelines.text_classification", "TextClassificationPipeline"),
    "zero-shot-classification": ("brainwork.pipelines.zero_shot", "ZeroShotClassificationPipeline"),
    "rag": ("brainwork.pipelines.rag", "RagPipeline"),
    "recommendation": ("brainwork.pipelines.recommendation", "RecommendationPipeline"),
    "rerank": ("brainwork.pipelines.rerank", "RerankPipeline"),
    "sentence-similarity": ("brainwork.pipelines.rerank", "SentenceSimilarityPipeline"),
    "text-to-speech": ("brainwork.pipelines.text_to_speech", "TextToSpeechPipeline"),
    "automatic-speech-recognition": ("brainwork.pipelines.speech_recognition", "SpeechRecognitionPipeline"),
    "image-classification": ("brainwork.pipelines.image_classification", "ImageClassificationPipeline"),
}

TASKS = tuple(sorted(_TASKS))


def pipeline(task: str, model: str | None = None, **kwargs: Any) -> Any:
    """Build the pipeline for `task`; `model` is a catalog name, a path or a hub id."""
    if task not in _TASKS:
        raise ValueError(f"task: unknown task {task!r}; known tasks: {', '.join(TASKS)}")
    module, name = _TASKS[task]
    cls = getattr(importlib.import_module(module), name)
    return cls(model=model, **kwargs)
