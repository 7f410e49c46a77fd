"""NLI zero-shot, rerank and sentence-similarity on encoders, against the reference
implementations holding the same weights: transformers' zero-shot pipeline (tiny random NLI
model), sentence-transformers' CrossEncoder (tiny random cross-encoder) and
SentenceTransformer (the packaged all-MiniLM-L6-v2)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from brainwork import pipeline
from brainwork.errors import ModelFormatError
from brainwork.store import resolve_model
from tests.tiny_encoders import make_encoder, random_sentences

LABELS = ["w7", "w8 w9", "w10", "w11 w12 w13"]


def _pair_model(folder: Path, case: str) -> Path:
    make_encoder(folder, case)
    # BERT tokenizers hand token_type_ids to the model (segment B is type 1), as ours does
    config = folder / "tokenizer_config.json"
    settings = json.loads(config.read_text())
    config.write_text(json.dumps({**settings, "model_input_names": ["input_ids", "token_type_ids", "attention_mask"]}))
    return folder


@pytest.fixture(scope="module")
def nli_folder(tmp_path_factory):
    return _pair_model(tmp_path_factory.mktemp("nli"), "bert-nli")


@pytest.fixture(scope="module")
def cross_folder(tmp_path_factory):
    return _pair_model(tmp_path_factory.mktemp("cross"), "cross-encoder")


@pytest.mark.parametrize("multi_label", [False, True])
def test_nli_zero_shot_matches_transformers(nli_folder, multi_label) -> None:
    import transformers

    texts = random_sentences([3, 9, 17, 5], seed=1)
    template = "w20 w21 {}"
    ref = transformers.pipeline("zero-shot-classification", model=str(nli_folder), device="cpu")
    ours = pipeline("zero-shot-classification", model=str(nli_folder), dtype="float32")
    assert ours.kind == "nli"
    expected = ref(texts, candidate_labels=LABELS, hypothesis_template=template, multi_label=multi_label)
    got = ours(texts, candidate_labels=LABELS, hypothesis_template=template, multi_label=multi_label)
    for e, g in zip(expected, got, strict=True):
        assert g["sequence"] == e["sequence"]
        want = dict(zip(e["labels"], e["scores"], strict=True))
        have = dict(zip(g["labels"], g["scores"], strict=True))
        for label in LABELS:
            assert have[label] == pytest.approx(want[label], abs=1e-5)  # float32 on both sides
        if not multi_label:
            assert sum(g["scores"]) == pytest.approx(1.0, abs=1e-5)


def test_nli_zero_shot_is_one_batched_call_per_input_batch(nli_folder) -> None:
    ours = pipeline("zero-shot-classification", model=str(nli_folder), dtype="float32")
    runner = ours.method.runner
    calls: list[int] = []
    original = runner.model.forward

    def counting(ids, *args, **kwargs):
        calls.append(ids.shape[0])
        return original(ids, *args, **kwargs)

    runner.model.forward = counting
    try:
        ours(random_sentences([4, 5, 6], seed=2), LABELS, hypothesis_template="w20 {}")
    finally:
        runner.model.forward = original
    # 3 inputs x 4 labels = 12 pairs, all in one padded batch (well under the token budget)
    assert calls == [12]


def test_cross_encoder_rerank_matches_sentence_transformers(cross_folder) -> None:
    from sentence_transformers import CrossEncoder

    query = random_sentences([4], seed=3)[0]
    docs = random_sentences([2, 11, 6, 20, 3], seed=4)
    ref = CrossEncoder(str(cross_folder), device="cpu").predict([(query, d) for d in docs])
    rerank = pipeline("rerank", model=str(cross_folder), dtype="float32")
    assert rerank.scorer.kind == "cross-encoder"
    out = rerank(query, docs)
    assert [r["index"] for r in out] == list(np.argsort(-ref, kind="stable"))
    for r in out:
        assert r["score"] == pytest.approx(float(ref[r["index"]]), abs=1e-5)
        assert r["document"] == docs[r["index"]]
    top = rerank(query, docs, top_n=2, return_documents=False)
    assert top == [{"index": o["index"], "score": o["score"]} for o in out[:2]]


@pytest.fixture(scope="module")
def minilm():
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(resolve_model("all-minilm-l6-v2").path), device="cpu")


def test_bi_encoder_similarity_and_rerank_match_sentence_transformers(minilm) -> None:
    source = "A man is playing a guitar on stage."
    sentences = ["Someone performs music.", "The stock market fell today.", "A man plays an instrument."]
    vectors = minilm.encode([source, *sentences], normalize_embeddings=True)  # (4, 384)
    ref = vectors[1:] @ vectors[0]
    similarity = pipeline("sentence-similarity", dtype="float32")
    got = similarity(source, sentences)
    assert got == pytest.approx(ref.tolist(), abs=1e-5)
    assert similarity({"source_sentence": source, "sentences": sentences}) == pytest.approx(got, abs=1e-7)
    ranked = pipeline("rerank", dtype="float32")(source, sentences)
    assert [r["index"] for r in ranked] == list(np.argsort(-ref))
    assert ranked[-1]["document"] == "The stock market fell today."


def test_embedding_zero_shot_picks_obvious_topics() -> None:
    zs = pipeline("zero-shot-classification", model="all-minilm-l6-v2")
    assert zs.kind == "embedding"
    texts = [
        "The striker scored twice and the team won the cup final.",
        "Shares of the bank fell after its quarterly profits disappointed investors.",
        "The new smartphone has a faster chip and a better camera.",
    ]
    out = zs(texts, ["sport", "business", "technology"], hypothesis_template="This article is about {}.")
    assert [o["labels"][0] for o in out] == ["sport", "business", "technology"]
    assert all(sum(o["scores"]) == pytest.approx(1.0, abs=1e-5) for o in out)
    multi = zs(texts[0], ["sport", "cooking"], multi_label=True)
    assert all(0.0 <= s <= 1.0 for s in multi["scores"]) and multi["labels"][0] == "sport"


@pytest.mark.parametrize(
    ("task", "args", "kwargs", "message"),
    [
        ("rerank", ("", ["a"]), {}, "query: empty string"),
        ("rerank", ("q", []), {}, "documents: empty list"),
        ("rerank", ("q", ["a", 3]), {}, r"documents\[1\]: expected a string"),
        ("rerank", ("q", ["a"]), {"top_n": 0}, "top_n"),
        ("sentence-similarity", ("q", None), {}, "sentences: required"),
        ("sentence-similarity", ({"source": "q"},), {}, "source_sentence"),
        ("zero-shot-classification", ("text", "a, a"), {}, "duplicate labels"),
    ],
)
def test_bad_input_is_named(task, args, kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        pipeline(task, model="all-minilm-l6-v2")(*args, **kwargs)


def test_pairs_over_the_length_limit_need_truncation(cross_folder) -> None:
    rerank = pipeline("rerank", model=str(cross_folder), dtype="float32")
    long_doc = random_sentences([80], seed=5)[0]  # the tiny model holds 64 positions
    with pytest.raises(ValueError, match="truncation=True"):
        rerank("w5 w6", [long_doc])
    (out,) = rerank("w5 w6", [long_doc], truncation=True)
    assert 0.0 <= out["score"] <= 1.0


def test_classifier_with_many_labels_is_not_a_cross_encoder(nli_folder) -> None:
    with pytest.raises(ModelFormatError, match="1 or 2 logits"):
        pipeline("rerank", model=str(nli_folder))
