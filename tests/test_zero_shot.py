"""zero-shot-classification and the chat-model sentiment default, on the packaged models."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from brainwork import pipeline
from brainwork.pipelines.zero_shot import ZeroShotClassificationPipeline

TWEETS = Path(__file__).parent.parent / "benchmarks" / "data" / "sentiment_tweets.tsv"


@pytest.fixture(scope="module")
def zero_shot() -> ZeroShotClassificationPipeline:
    # the 0.5B model keeps the test fast; the default is the 1.5B one
    return pipeline("zero-shot-classification", model="qwen2.5-coder-0.5b-instruct", max_model_len=1024)


def test_hf_shape_and_probabilities(zero_shot) -> None:
    out = zero_shot("The striker scored twice in the cup final.", ["sports", "politics", "cooking"])
    assert set(out) == {"sequence", "labels", "scores"}
    assert sorted(out["labels"]) == ["cooking", "politics", "sports"]
    assert out["scores"] == sorted(out["scores"], reverse=True)
    assert sum(out["scores"]) == pytest.approx(1.0, abs=1e-5)
    assert out["labels"][0] == "sports"


def test_obvious_topics(zero_shot) -> None:
    texts = [
        "Parliament voted on the new budget bill after a long debate between the parties.",
        "Add the flour and sugar, then bake the cake for forty minutes.",
        "The goalkeeper saved a penalty in the last minute of the match.",
    ]
    labels = ["politics", "cooking", "sports"]
    assert [r["labels"][0] for r in zero_shot(texts, labels)] == labels


def test_one_forward_pass_per_input_for_all_labels(zero_shot) -> None:
    added: list[int] = []
    engine = zero_shot.method.llm.engine
    original = engine.add_request

    def counting(*args, **kwargs):
        added.append(1)
        return original(*args, **kwargs)

    engine.add_request = counting
    try:
        zero_shot(["a text about football", "a text about taxes"], ["sports", "politics", "cooking", "music"])
    finally:
        engine.add_request = original
    assert len(added) == 2 + 1  # one request per input, plus the content-free calibration prompt


def test_multi_label_scores_each_label_on_its_own(zero_shot) -> None:
    out = zero_shot(
        "The band played a concert to raise money for the election campaign.",
        ["music", "politics", "cooking"],
        multi_label=True,
    )
    scores = dict(zip(out["labels"], out["scores"], strict=True))
    assert all(0 <= s <= 1 for s in scores.values())
    assert scores["cooking"] < min(scores["music"], scores["politics"])


@pytest.mark.parametrize(
    ("labels", "kwargs", "message"),
    [
        ([], {}, "candidate_labels: empty list"),
        (None, {}, "candidate_labels: required"),
        (["a", "a"], {}, "duplicate labels"),
        (["ok", ""], {}, r"candidate_labels\[1\]"),
        (["a", "b"], {"hypothesis_template": "no slot"}, "hypothesis_template"),
    ],
)
def test_bad_labels_are_named(zero_shot, labels, kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        zero_shot("some text", labels, **kwargs)


def test_bad_inputs_are_named(zero_shot) -> None:
    with pytest.raises(ValueError, match=r"sequences\[1\]"):
        zero_shot(["fine", ""], ["a", "b"])


def test_sentiment_default_on_held_back_tweets() -> None:
    """The default (few-shot label likelihoods with Qwen2.5-Coder-1.5B) on the first 60 of the
    400 hand-written tweets; benchmarks/sentiment_accuracy.py runs all 400 (0.9625)."""
    with TWEETS.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))[:60]
    sentiment = pipeline("sentiment-analysis")
    out = sentiment([r["text"] for r in rows])
    accuracy = sum(o["label"] == r["label"].upper() for o, r in zip(out, rows, strict=True)) / len(rows)
    assert accuracy >= 0.9
    top = sentiment("I love learning AI!", top_k=None)
    assert top[0]["label"] == "POSITIVE" and sum(t["score"] for t in top) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="truncation=True"):
        sentiment("word " * 3000)
    assert sentiment("word " * 3000 + " I hate it", truncation=True)[0]["label"] in ("POSITIVE", "NEGATIVE")
