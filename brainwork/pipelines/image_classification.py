"""`image-classification`: `[{"label", "score"}, ...]` per image, likeliest first, as Hugging Face.

`classify_images` is the entry point for servers: images as base64 strings, data URLs or raw
bytes, one shared classifier per model.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from brainwork.media_errors import ImageDecodeError
from brainwork.vision.classifier import DEFAULT_IMAGE_MODEL, ImageClassifier
from brainwork.vision.preprocess import decode_base64_image

MAX_IMAGES = 64  # per classify_images call


class ImageClassificationPipeline:
    def __init__(self, model: str | os.PathLike[str] | None = None, **kwargs: Any) -> None:
        self.classifier = ImageClassifier(model, **kwargs)

    def __call__(self, images: Any, top_k: int = 5) -> list[dict[str, Any]] | list[list[dict[str, Any]]]:
        """One image (path, URL, bytes, PIL image, uint8 array) -> a list; a list of images -> a list of lists."""
        single = not isinstance(images, list | tuple)
        batch = [images] if single else list(images)
        if not batch:
            raise ImageDecodeError("images: empty list")
        out = self.classifier.classify(batch, top_k, "image" if single else "images", indexed=not single)
        return out[0] if single else out


_shared: dict[str, ImageClassificationPipeline] = {}
_shared_lock = threading.Lock()


def shared_pipeline(model: str | None = None) -> ImageClassificationPipeline:
    """One pipeline per model name for the whole process, built on first use (thread-safe)."""
    name = model or DEFAULT_IMAGE_MODEL
    with _shared_lock:
        if name not in _shared:
            _shared[name] = ImageClassificationPipeline(name)
        return _shared[name]


def classify_images(
    images: list[str | bytes], model: str | None = None, top_k: int = 5, field: str = "input"
) -> list[list[dict[str, Any]]]:
    """Classify images given as base64 strings, `data:image/...;base64,...` URLs or raw bytes.

    Returns one list per image of `{"label": str, "score": float}`, `top_k` long, likeliest first.
    Raises `ImageDecodeError` (a ValueError) naming `field[i]` for an item that is not an image,
    `ModelNotFoundError` for an unknown model. Blocking (a forward pass): call from a worker thread.
    """
    if not isinstance(images, list) or not images:
        raise ImageDecodeError(f"{field}: expected a non-empty list of images")
    if len(images) > MAX_IMAGES:
        raise ImageDecodeError(f"{field}: at most {MAX_IMAGES} images per request, got {len(images)}")
    decoded = []
    for i, item in enumerate(images):
        if isinstance(item, str):
            decoded.append(decode_base64_image(item, f"{field}[{i}]"))
        elif isinstance(item, bytes | bytearray):
            decoded.append(bytes(item))
        else:
            raise ImageDecodeError(f"{field}[{i}]: expected a base64 string or bytes, got {type(item).__name__}")
    return shared_pipeline(model).classifier.classify(decoded, top_k, field)
