"""BERT-family outputs equal transformers' on tiny random models (fp32, 1e-4 absolute).

Each case saves a random transformers model with `save_pretrained`, loads the folder through
`EncoderRunner`, and compares last hidden states (every position of a right-padded batch of
different lengths) and classification logits.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from brainwork.engine.encoder import EncoderRunner
from tests.tiny_encoders import ARCHS, make_encoder, random_sentences, token_ids

TOL = 1e-4
LENGTHS = [9, 2, 30, 0, 17]  # words per sentence; 0 gives just [CLS] [SEP]


def _hf_outputs(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor, types: torch.Tensor | None):
    """(last hidden state (B, T, H), logits (B, L) or None) from a transformers model."""
    kwargs = {"input_ids": ids, "attention_mask": mask, "output_hidden_states": True}
    if types is not None:
        kwargs["token_type_ids"] = types
    with torch.no_grad():
        out = model(**kwargs)
    name = type(model).__name__
    if name.endswith("Model"):
        return out.last_hidden_state, None
    logits = out.logits if name.endswith("ForSequenceClassification") else None
    return out.hidden_states[-1], logits


def _padded_batch(runner: EncoderRunner, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Right-padded ids/mask (B, T) with the model's pad id, and random token types when it has them."""
    rows = [token_ids(t) for t in texts]
    b, t = len(rows), max(len(r) for r in rows)
    ids = torch.full((b, t), runner.config.pad_token_id, dtype=torch.long)
    mask = torch.zeros((b, t), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    if runner.config.type_vocab_size < 2:
        return ids, mask, None
    g = torch.Generator().manual_seed(1)
    types = torch.randint(0, 2, (b, t), generator=g) * mask  # exercise the token-type table
    return ids, mask, types


@pytest.mark.parametrize("case", sorted(ARCHS))
def test_padded_batch_matches_transformers(case: str, tmp_path: Path) -> None:
    reference = make_encoder(tmp_path, case)
    runner = EncoderRunner(tmp_path)
    ids, mask, types = _padded_batch(runner, random_sentences(LENGTHS))

    want_hidden, want_logits = _hf_outputs(reference, ids, mask, types)
    with torch.inference_mode():
        hidden = runner.model(ids, mask, types)
        logits = runner.model.classify(hidden) if runner.model.head is not None else None

    hidden_diff = (hidden - want_hidden).abs().max().item()
    print(f"{case}: max |hidden diff| {hidden_diff:.2e}")
    assert hidden_diff < TOL
    assert (logits is None) == (want_logits is None)
    if logits is not None:
        logits_diff = (logits - want_logits).abs().max().item()
        print(f"{case}: max |logits diff| {logits_diff:.2e}")
        assert logits_diff < TOL


@pytest.mark.parametrize("case", ["bert", "roberta-cls", "distilbert-cls"])
def test_runner_text_outputs_match_unpadded_transformers(case: str, tmp_path: Path) -> None:
    """features()/classify_logits() on texts equal transformers run on each text alone."""
    reference = make_encoder(tmp_path, case)
    runner = EncoderRunner(tmp_path, token_budget=40)  # several batches, sorted and restored
    texts = random_sentences([5, 20, 1, 12, 0, 33, 7])
    features = runner.features(texts)
    logits = runner.classify_logits(texts) if runner.model.head is not None else None
    for i, text in enumerate(texts):
        ids = torch.tensor([token_ids(text)])
        want_hidden, want_logits = _hf_outputs(reference, ids, torch.ones_like(ids), None)
        assert features[i].shape == want_hidden[0].shape
        assert (features[i] - want_hidden[0]).abs().max().item() < TOL
        if logits is not None:
            assert (logits[i] - want_logits[0]).abs().max().item() < TOL


def test_config_labels(tmp_path: Path) -> None:
    make_encoder(tmp_path, "roberta-cls")
    runner = EncoderRunner(tmp_path)
    assert runner.id2label == {0: "neg", 1: "pos"}
    assert dict(runner.config.label2id) == {"neg": 0, "pos": 1}
    assert runner.config.num_labels == 2
    assert runner.config.position_offset == 2  # RoBERTa: padding_idx (1) + 1
    assert runner.max_length == 62  # 64 positions less the offset


@pytest.mark.parametrize(("case", "fused"), [("bert", ("gelu", "none")), ("bert-gelu-new", ("gelu", "tanh"))])
def test_the_mlp_activation_rides_on_the_matmul(case: str, fused: tuple[str, str], tmp_path: Path, monkeypatch) -> None:
    """Each layer's up projection + GELU is one oneDNN call with GELU as its post-op (erf or
    tanh as the checkpoint names it), and the outputs still match transformers (1e-4)."""
    from brainwork.models import bert

    reference = make_encoder(tmp_path, case)
    runner = EncoderRunner(tmp_path)
    ids, mask, types = _padded_batch(runner, random_sentences(LENGTHS))
    want_hidden, _ = _hf_outputs(reference, ids, mask, types)
    posts: list[tuple[str, str]] = []
    real = bert.onednn_linear

    def spy(x, w, b=None, post="none", algorithm=""):
        posts.append((post, algorithm))
        return real(x, w, b, post, algorithm)

    monkeypatch.setattr(bert, "onednn_linear", spy)
    with torch.inference_mode():
        hidden = runner.model(ids, mask, types)
    assert posts == [fused] * runner.config.num_layers
    assert (hidden - want_hidden).abs().max().item() < TOL
