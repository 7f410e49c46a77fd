"""An ImageNet classifier: EfficientNet-Lite0 weights from the catalog, class names, top-k."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from brainwork.errors import ModelFormatError
from brainwork.store import resolve_model
from brainwork.vision.efficientnet import IMAGE_SIZE, EfficientNetLite
from brainwork.vision.labels import imagenet_labels
from brainwork.vision.preprocess import load_image, preprocess

DEFAULT_IMAGE_MODEL = "efficientnet-lite0"
MAX_BATCH = 32  # images per forward: bounds the activations' memory (~25 MB per image)


def weights_file(model: str | os.PathLike[str] | None) -> tuple[str, Path]:
    """A catalog name or a path to a `.pth` state dict."""
    text = str(model or DEFAULT_IMAGE_MODEL)
    path = Path(text).expanduser()
    if path.is_file():
        return path.stem, path.resolve()
    resolved = resolve_model(text)
    if resolved.format != "torch":
        raise ModelFormatError(f"model: {resolved.name} is a {resolved.format} model, not an image classifier")
    return resolved.name, resolved.path


class ImageClassifier:
    def __init__(self, model: str | os.PathLike[str] | None = None) -> None:
        self.name, path = weights_file(model)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            self.net = EfficientNetLite()
            self.net.load_reference_state(state)
        except (KeyError, RuntimeError, OSError, ValueError) as e:
            raise ModelFormatError(f"{path}: not an EfficientNet-Lite0 state dict ({type(e).__name__}: {e})") from e
        self.net.eval()
        self.labels = imagenet_labels()

    @torch.inference_mode()
    def logits(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N, 3, 224, 224) preprocessed pixels -> (N, 1000) logits, in batches of MAX_BATCH."""
        return torch.cat([self.net(pixels[i : i + MAX_BATCH]) for i in range(0, len(pixels), MAX_BATCH)])

    def pixels(self, images: list[Any], field: str = "images", indexed: bool = True) -> torch.Tensor:
        """Decode and preprocess each image -> (N, 3, 224, 224); errors name `field[i]`
        (or `field` alone when not `indexed`: one image given on its own)."""
        names = [f"{field}[{i}]" if indexed else field for i in range(len(images))]
        return torch.stack([preprocess(load_image(im, n), IMAGE_SIZE) for im, n in zip(images, names, strict=True)])

    def classify(
        self, images: list[Any], top_k: int = 5, field: str = "images", indexed: bool = True
    ) -> list[list[dict[str, Any]]]:
        """For each image its `top_k` classes as `{"label", "score"}`, likeliest first (softmax scores)."""
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"top_k: expected a positive integer, got {top_k!r}")
        k = min(top_k, len(self.labels))
        probs = self.logits(self.pixels(images, field, indexed)).softmax(-1)  # (N, 1000)
        scores, ids = probs.topk(k, dim=-1)
        return [
            [{"label": self.labels[int(i)], "score": float(s)} for s, i in zip(row_s, row_i, strict=True)]
            for row_s, row_i in zip(scores, ids, strict=True)
        ]
