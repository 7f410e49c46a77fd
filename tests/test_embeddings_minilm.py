"""all-MiniLM-L6-v2 embeddings equal sentence-transformers' on ~100 varied sentences.

The packaged folder is a sentence-transformers folder (mean pooling, Normalize, max_seq_length
256), so `EncoderRunner.embed` must reproduce `SentenceTransformer.encode` including the
truncation of an input longer than 256 tokens. Criterion: cosine >= 0.9999 for every sentence
in float32; >= 0.999 in bfloat16, the default where the CPU computes bfloat16 natively.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from brainwork.engine.encoder import EncoderRunner, encoder_dtype, native_bfloat16
from brainwork.pipelines import pipeline

MIN_COSINE = 0.9999
MIN_COSINE_BF16 = 0.999  # the bar for a faster dtype; measured 0.99990 on these sentences

_BASE = [
    "The cat sat on the mat.",
    "A quick brown fox jumps over the lazy dog!",
    "How do I reset my password?",
    "Machine learning models need lots of data.",
    "Paris is the capital of France.",
    "¿Dónde está la biblioteca?",
    "Das Wetter ist heute schön, aber kalt.",
    "東京は日本の首都です。",
    "The price went up 12.5% in Q3 2023 (from $1,200 to $1,350).",
    "def add(a, b):\n    return a + b",
    "I love this movie 😍🍿",
    "e-mail: someone@example.com, url: https://example.org/path?q=1",
    "naïve café résumé coöperate",
    "   leading and trailing spaces   ",
    "UPPER CASE SHOUTING TEXT",
    "a",
    "?",
    "Is it raining in Seattle right now, or is that just a stereotype people repeat?",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "The mitochondria is the powerhouse of the cell.",
    "Stocks fell sharply after the central bank raised interest rates again.",
    "Please remember to bring your passport and two printed copies of the booking.",
    'He said, "don\'t go there" — but she went anyway.',
    "Tabs\tand\nnewlines\r\nmixed in.",
    "Ελληνικά κείμενα και русский текст вместе.",
    "Supercalifragilisticexpialidocious antidisestablishmentarianism",
    "1 2 3 4 5 6 7 8 9 10",
    "The committee will reconvene on Tuesday to discuss the budget proposal in detail.",
    "",
]


def _sentences() -> list[str]:
    """~100 sentences: the base ones, pairs and triples of them, and one > 256 tokens."""
    n = len(_BASE)
    out = list(_BASE)
    out += [f"{_BASE[i]} {_BASE[(i * 7 + 3) % n]}" for i in range(n)]
    out += [" ".join(_BASE[(i + k * 5) % n] for k in range(3 + i % 4)) for i in range(n)]
    out += [" ".join(_BASE[: 10 + i]) for i in range(12)]
    out.append(" ".join(_BASE[i % n] for i in range(90)))  # well over 256 tokens: truncated
    return out


@pytest.fixture(scope="module")
def runner(minilm_dir: Path) -> EncoderRunner:
    return EncoderRunner(minilm_dir)


@pytest.fixture(scope="module")
def reference(minilm_dir: Path):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(minilm_dir), device="cpu")


def test_embeddings_match_sentence_transformers(runner: EncoderRunner, reference) -> None:
    sentences = _sentences()
    assert len(sentences) >= 100
    assert max(runner.token_lengths(sentences)) > 256

    ours = runner.embed(sentences)
    want = torch.from_numpy(reference.encode(sentences, convert_to_numpy=True))
    assert ours.shape == want.shape == (len(sentences), 384)
    cosine = torch.nn.functional.cosine_similarity(ours, want, dim=1)
    print(f"min cosine {cosine.min().item():.7f}, max |diff| {(ours - want).abs().max().item():.2e}")
    worst = int(cosine.argmin())
    assert cosine.min().item() >= MIN_COSINE, f"sentence {worst} {sentences[worst][:60]!r}: {cosine[worst]}"
    assert torch.allclose(ours.norm(dim=1), torch.ones(len(sentences)), atol=1e-5)  # Normalize module


def test_bfloat16_embeddings_stay_within_0999_cosine(minilm_dir: Path, reference) -> None:
    sentences = _sentences()
    ours = EncoderRunner(minilm_dir, dtype="bfloat16").embed(sentences).float()
    want = torch.from_numpy(reference.encode(sentences, convert_to_numpy=True))
    cosine = torch.nn.functional.cosine_similarity(ours, want, dim=1)
    print(f"bfloat16: min cosine {cosine.min().item():.6f}")
    assert MIN_COSINE_BF16 <= cosine.min().item() < 1 - 1e-7  # near, and really not float32


def test_the_encoder_task_pipelines_pick_bfloat16_only_where_the_cpu_has_it(minilm_dir: Path) -> None:
    want = torch.bfloat16 if native_bfloat16() else torch.float32
    assert encoder_dtype("auto") == want
    runners = {
        "sentence-embeddings": lambda p: p.runner,
        "text-classification": lambda p: p.runner,
        "zero-shot-classification": lambda p: p.method.runner,
        "rerank": lambda p: p.scorer.runner,
        "sentence-similarity": lambda p: p.scorer.runner,
    }
    for task, runner in runners.items():
        assert runner(pipeline(task, model=str(minilm_dir))).dtype == want, task
        assert runner(pipeline(task, model=str(minilm_dir), dtype="float32")).dtype == torch.float32, task
    assert pipeline("feature-extraction", model=str(minilm_dir)).runner.dtype == torch.float32  # raw, exact
    assert EncoderRunner(minilm_dir).dtype == torch.float32
    with pytest.raises(ValueError, match="dtype: expected auto"):
        encoder_dtype("float8")


def test_token_features_match_sentence_transformers(runner: EncoderRunner, reference) -> None:
    sentences = [_BASE[1], _BASE[8], _BASE[15], _sentences()[-1]]
    ours = runner.features(sentences)
    want = reference.encode(sentences, output_value="token_embeddings", convert_to_tensor=False)
    for mine, theirs in zip(ours, want, strict=True):
        assert mine.shape == theirs.shape
        assert (mine - theirs.cpu()).abs().max().item() < 1e-4


def test_settings_follow_the_sentence_transformers_folder(runner: EncoderRunner) -> None:
    assert runner.max_length == 256  # sentence_bert_config.json, not the 512 positions
    assert runner.pooling_modes == ("mean",)
    assert runner.normalize is True
    assert runner.truncation is True
    unnormalized = runner.embed(["A quick brown fox."], normalize=False)
    assert unnormalized.norm().item() > 1.5  # the raw mean is not unit length for this model


def test_too_long_without_truncation_names_index_and_lengths(runner: EncoderRunner) -> None:
    long_text = _sentences()[-1]
    (n,) = runner.token_lengths([long_text])
    with pytest.raises(ValueError, match=rf"texts\[1\] is {n} tokens long.*maximum of 256"):
        runner.embed(["short", long_text], truncation=False)


def test_bfloat16_classification_keeps_the_float32_decisions(minilm_dir: Path) -> None:
    """The classification pipeline's bfloat16 default (where native) against float32, on about 100
    sentences through the MiniLM sentiment prototypes: every clear decision (top score >= 0.52)
    equal, every probability within 0.03 (measured: 0.014; the one flip sat at 0.5008)."""
    texts = [s for s in _sentences() if s.strip()]
    fast = pipeline("text-classification", model=str(minilm_dir), dtype="bfloat16")(texts, top_k=None)
    exact = pipeline("text-classification", model=str(minilm_dir), dtype="float32")(texts, top_k=None)
    for f, e in zip(fast, exact, strict=True):
        if e[0]["score"] >= 0.52:
            assert f[0]["label"] == e[0]["label"]
        want = {x["label"]: x["score"] for x in e}
        assert all(abs(x["score"] - want[x["label"]]) < 0.03 for x in f)
