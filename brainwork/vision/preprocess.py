"""Images in: decoding (path, bytes, base64, PIL, array, URL when online) and the EfficientNet-Lite
eval transform.

The transform is TensorFlow's EfficientNet eval preprocessing, which the Lite checkpoints were
trained with: a center crop of 224/256 of the shorter side, bicubic resize to 224x224, then
(pixel - 127) / 128 (Lite's MEAN_RGB and STDDEV_RGB, not ImageNet's mean and std).
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from brainwork.errors import OfflineError
from brainwork.media_errors import ImageDecodeError

CROP_PADDING = 32  # crop = size / (size + 32) of the shorter side
MEAN, STD = 127.0, 128.0
MAX_PIXELS = 64_000_000  # larger images are refused before decoding (decompression bombs)
URL_TIMEOUT_S = 10


def _open(data: bytes, field: str) -> Image.Image:
    if not data:
        raise ImageDecodeError(f"{field}: empty image data")
    try:
        img = Image.open(io.BytesIO(data))
        if img.width * img.height > MAX_PIXELS:
            raise ImageDecodeError(f"{field}: {img.width}x{img.height} is over the limit of {MAX_PIXELS} pixels")
        img.load()
    except ImageDecodeError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError) as e:
        raise ImageDecodeError(f"{field}: not a readable image ({type(e).__name__}: {e})") from None
    return img


def decode_base64_image(text: str, field: str = "image") -> Image.Image:
    """A base64 string or a `data:image/...;base64,` URL."""
    payload = text.split(",", 1)[1] if text.startswith("data:") and "," in text else text
    try:
        data = base64.b64decode(payload.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ImageDecodeError(f"{field}: not valid base64 image data") from None
    return _open(data, field)


def load_image(image: Any, field: str = "image") -> Image.Image:
    """An RGB PIL image from a path, an http(s) URL, a data URL, bytes, a PIL image or an
    (H, W, 3) uint8 array."""
    if isinstance(image, Image.Image):
        img = image
    elif isinstance(image, bytes | bytearray):
        img = _open(bytes(image), field)
    elif isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
            raise ImageDecodeError(f"{field}: an array must be uint8 shaped (H, W), (H, W, 3) or (H, W, 4)")
        img = Image.fromarray(image)
    elif isinstance(image, str) and image.startswith("data:"):
        img = decode_base64_image(image, field)
    elif isinstance(image, str) and image.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(image, timeout=URL_TIMEOUT_S) as r:
                data = r.read(MAX_PIXELS * 4)
        except OSError as e:
            raise OfflineError(f"{field}: could not fetch {image} ({e}); pass a file or bytes when offline") from None
        img = _open(data, field)
    elif isinstance(image, str | os.PathLike):
        path = Path(image)
        if not path.is_file():
            raise ImageDecodeError(f"{field}: no such file: {path}")
        img = _open(path.read_bytes(), field)
    else:
        raise ImageDecodeError(f"{field}: expected a path, URL, bytes, PIL image or array, got {type(image).__name__}")
    if img.width < 1 or img.height < 1:
        raise ImageDecodeError(f"{field}: the image has no pixels")
    return img.convert("RGB")


def preprocess(img: Image.Image, size: int = 224) -> torch.Tensor:
    """RGB image -> float32 tensor (3, size, size), normalised as the Lite checkpoints expect."""
    w, h = img.size
    crop = max(1, round(min(w, h) * size / (size + CROP_PADDING)))
    left, top = (w - crop) // 2, (h - crop) // 2
    img = img.crop((left, top, left + crop, top + crop)).resize((size, size), Image.Resampling.BICUBIC)
    pixels = np.asarray(img, dtype=np.float32)  # (H, W, 3) in 0..255
    return torch.from_numpy((pixels - MEAN) / STD).permute(2, 0, 1).contiguous()
