"""pipeline(): the Hugging Face call shapes, on the real default models and on tiny checkpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from brainwork import LLM, SamplingParams, pipeline
from tests.tiny_encoders import make_encoder, random_sentences

# Plain cases written for this test (none of them is one of the pipeline's own examples).
PLAIN_POSITIVE = [
    "I love learning AI!",
    "Great job, team!",
    "The hotel room was clean and comfortable.",
    "What a delightful surprise, thank you!",
    "This coffee is delicious.",
    "The concert last night was incredible.",
    "I'm thrilled with the results.",
    "Customer support fixed my issue in minutes, brilliant.",
]
PLAIN_NEGATIVE = [
    "This movie was boring and too long.",
    "My package never arrived.",
    "The battery life is disappointing.",
    "The service was slow and the waiter was rude.",
    "I regret buying this laptop.",
    "The room smelled bad and the sheets were dirty.",
    "Terrible experience, I want my money back.",
    "The train was cancelled again, so annoying.",
]


@pytest.fixture(scope="module")
def sentiment():
    return pipeline("sentiment-analysis")


def test_seed_example(sentiment) -> None:
    out = sentiment("I love learning AI!")
    assert isinstance(out, list) and len(out) == 1
    assert out[0]["label"] == "POSITIVE" and out[0]["score"] > 0.9


def test_plain_cases_are_right(sentiment) -> None:
    labels = [r["label"] for r in sentiment(PLAIN_POSITIVE + PLAIN_NEGATIVE)]
    assert labels == ["POSITIVE"] * len(PLAIN_POSITIVE) + ["NEGATIVE"] * len(PLAIN_NEGATIVE)


def test_top_k_none_gives_all_labels_as_probabilities(sentiment) -> None:
    out = sentiment("The food was fine.", top_k=None)
    assert [r["label"] for r in out] in (["POSITIVE", "NEGATIVE"], ["NEGATIVE", "POSITIVE"])
    assert abs(sum(r["score"] for r in out) - 1.0) < 1e-5
    assert out[0]["score"] >= out[1]["score"]


@pytest.mark.parametrize(
    ("bad", "field"),
    [("", "inputs[0]"), ([], "inputs"), (["ok", 3], "inputs[1]"), (None, "inputs")],
)
def test_bad_inputs_name_the_field(sentiment, bad, field) -> None:
    with pytest.raises(ValueError, match=field.replace("[", r"\[").replace("]", r"\]")):
        sentiment(bad)


def test_unknown_task() -> None:
    with pytest.raises(ValueError, match=r"unknown task 'summarize-my-life'.*sentiment-analysis"):
        pipeline("summarize-my-life")


def test_native_classifier_matches_transformers_pipeline(tmp_path: Path) -> None:
    """A fine-tuned checkpoint runs on its own head: labels and scores equal transformers' (1e-5)."""
    import transformers

    make_encoder(tmp_path, "distilbert-cls")
    texts = random_sentences([3, 9, 17, 5])
    ours = pipeline("text-classification", model=str(tmp_path), dtype="float32")(texts, top_k=None)
    ref = transformers.pipeline("text-classification", model=str(tmp_path), device="cpu")(texts, top_k=None)
    for o, r in zip(ours, ref, strict=True):
        assert [x["label"] for x in o] == [x["label"] for x in r]
        assert np.allclose([x["score"] for x in o], [x["score"] for x in r], atol=1e-5)


def test_sentence_embeddings_shape_and_norm() -> None:
    emb = pipeline("sentence-embeddings")
    one = emb("A sentence to embed.")
    many = emb(["first", "second one", "and a third sentence"])
    assert one.shape == (384,) and many.shape == (3, 384)
    assert np.allclose(np.linalg.norm(many, axis=1), 1.0, atol=1e-5)
    assert np.allclose(emb(["A sentence to embed."])[0], one, atol=1e-6)


def test_feature_extraction_matches_transformers(minilm_dir: Path) -> None:
    import transformers

    texts = ["Hello world", "A somewhat longer sentence for token features."]
    ours = pipeline("feature-extraction", model=str(minilm_dir))(texts)
    ref = transformers.pipeline("feature-extraction", model=str(minilm_dir), device="cpu")(texts)
    for o, r in zip(ours, ref, strict=True):
        assert np.asarray(o).shape == np.asarray(r).shape  # [1][tokens][384]
        assert np.abs(np.asarray(o) - np.asarray(r)).max() < 1e-4


@pytest.fixture(scope="module")
def generator():
    return pipeline("text-generation")


def test_text_generation_string_and_chat(generator) -> None:
    out = generator("The capital of France is", max_new_tokens=8)
    assert out[0]["generated_text"].startswith("The capital of France is")
    assert "Paris" in out[0]["generated_text"]
    llm: LLM = generator.llm
    expected = (
        llm.generate(["The capital of France is"], SamplingParams(temperature=0, max_tokens=8))[0].outputs[0].text
    )
    assert out[0]["generated_text"] == "The capital of France is" + expected
    chat = generator([{"role": "user", "content": "What is the capital of France?"}], max_new_tokens=16)
    convo = chat[0]["generated_text"]
    assert convo[-1]["role"] == "assistant" and "Paris" in convo[-1]["content"]


def test_text_generation_batch_shape(generator) -> None:
    out = generator(["Hello", "One, two,"], max_new_tokens=3, return_full_text=False)
    assert len(out) == 2 and all(isinstance(o, list) and "generated_text" in o[0] for o in out)


def test_sampling_with_seed_is_reproducible(generator) -> None:
    a = generator("Once upon a time", max_new_tokens=12, do_sample=True, temperature=0.9, seed=7)
    b = generator("Once upon a time", max_new_tokens=12, do_sample=True, temperature=0.9, seed=7)
    assert a == b
