"""EncoderRunner behaviour on tiny models: the token-budget batcher, bad inputs, bad checkpoints,
and sentence-transformers folders (pooling modes, max length, Transformer in a subfolder)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from brainwork.engine.encoder import EncoderRunner
from brainwork.engine.token_batches import plan_batches
from brainwork.errors import ModelFormatError
from tests.tiny_encoders import make_encoder, random_sentences, write_tokenizer


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("bert")
    make_encoder(folder, "bert")
    return folder


# --- batcher -------------------------------------------------------------------------------


def test_plan_batches_covers_every_input_once_within_budget() -> None:
    g = torch.Generator().manual_seed(0)
    lengths = [int(n) for n in torch.randint(1, 60, (200,), generator=g)] + [150]  # 150 > budget
    budget = 128
    batches = plan_batches(lengths, budget)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        padded = max(lengths[i] for i in batch) * len(batch)
        assert padded <= budget or len(batch) == 1
    assert batches[0] == [200]  # longest first, alone since it is over the budget
    waste = sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)
    assert waste < 0.1 * sum(lengths)  # sorted batches carry little padding


def test_plan_batches_edge_cases() -> None:
    assert plan_batches([], 64) == []
    assert plan_batches([5, 5, 5], 15) == [[0, 1, 2]]
    with pytest.raises(ValueError, match="token_budget"):
        plan_batches([3], 0)


def test_small_budget_restores_input_order(bert_dir: Path) -> None:
    texts = random_sentences([3, 25, 0, 11, 25, 6, 40, 1])
    one_batch = EncoderRunner(bert_dir, token_budget=100_000)
    many_batches = EncoderRunner(bert_dir, token_budget=20)
    for a, b in zip(one_batch.features(texts), many_batches.features(texts), strict=True):
        assert a.shape == b.shape
        assert torch.allclose(a, b, atol=1e-5)
    assert [f.shape[0] for f in many_batches.features(texts)] == [5, 27, 2, 13, 27, 8, 42, 3]
    assert torch.allclose(one_batch.embed(texts), many_batches.embed(texts), atol=1e-5)


# --- bad inputs ----------------------------------------------------------------------------


def test_empty_list_gives_empty_results(tmp_path: Path) -> None:
    make_encoder(tmp_path, "bert-cls")
    runner = EncoderRunner(tmp_path)
    assert runner.embed([]).shape == (0, 48)
    assert runner.features([]) == []
    assert runner.classify_logits([]).shape == (0, 3)


def test_non_string_item_names_its_index(bert_dir: Path) -> None:
    runner = EncoderRunner(bert_dir)
    with pytest.raises(ValueError, match=r"texts\[2\] must be str, got int"):
        runner.embed(["w5", "w6", 7])
    with pytest.raises(ValueError, match="list of str, got str"):
        runner.features("w5 w6")  # type: ignore[arg-type]


def test_too_long_input_needs_truncation(bert_dir: Path) -> None:
    runner = EncoderRunner(bert_dir)  # a plain HF folder: truncation off by default
    assert runner.truncation is False and runner.max_length == 64
    texts = random_sentences([4, 70])
    with pytest.raises(ValueError, match=r"texts\[1\] is 72 tokens long, over the model's maximum of 64"):
        runner.features(texts)
    cut = runner.features(texts, truncation=True)
    assert [f.shape[0] for f in cut] == [6, 64]
    assert EncoderRunner(bert_dir, truncation=True).embed(texts).shape == (2, 48)


def test_classify_on_a_base_model_is_refused(bert_dir: Path) -> None:
    with pytest.raises(ModelFormatError, match=r"BertModel.*not a sequence-classification"):
        EncoderRunner(bert_dir).classify_logits(["w5"])


def test_tokenizer_json_padding_and_truncation_are_ignored(tmp_path: Path) -> None:
    make_encoder(tmp_path, "bert")
    write_tokenizer(tmp_path, max_length=8)  # a file that says: pad and cut to 8
    features = EncoderRunner(tmp_path).features(random_sentences([2, 20]))
    assert [f.shape[0] for f in features] == [4, 22]


# --- bad checkpoints -----------------------------------------------------------------------


def _rewrite_weights(folder: Path, edit) -> None:
    tensors = load_file(str(folder / "model.safetensors"))
    edit(tensors)
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})


def test_missing_tensor_is_named(tmp_path: Path) -> None:
    make_encoder(tmp_path, "distilbert-cls")
    _rewrite_weights(tmp_path, lambda t: t.pop("distilbert.transformer.layer.1.ffn.lin2.weight"))
    with pytest.raises(ModelFormatError, match=r"unloaded: transformer\.layer\.1\.ffn\.lin2\.weight"):
        EncoderRunner(tmp_path)


def test_wrong_shape_is_named(tmp_path: Path) -> None:
    make_encoder(tmp_path, "roberta")

    def shrink(t: dict[str, torch.Tensor]) -> None:
        t["embeddings.LayerNorm.weight"] = t["embeddings.LayerNorm.weight"][:10].contiguous()

    _rewrite_weights(tmp_path, shrink)
    with pytest.raises(ModelFormatError, match=r"'embeddings.LayerNorm.weight' has shape \(10,\), expected \(48,\)"):
        EncoderRunner(tmp_path)


def test_unused_tensors_are_skipped_and_nothing_stays_on_meta(tmp_path: Path) -> None:
    make_encoder(tmp_path, "bert-mlm")  # carries cls.predictions.* that an encoder does not use

    def add_junk(t: dict[str, torch.Tensor]) -> None:
        t["bert.embeddings.position_ids"] = torch.arange(64)[None]

    _rewrite_weights(tmp_path, add_junk)
    runner = EncoderRunner(tmp_path)
    assert all(p.device.type == "cpu" for p in runner.model.parameters())
    assert runner.model.head is None


# --- sentence-transformers folders ---------------------------------------------------------


def _write_st_folder(folder: Path, transformer_path: str, pooling: dict, max_seq_length: int) -> None:
    modules = [
        {"idx": 0, "name": "0", "path": transformer_path, "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 48, **pooling}))
    sbert = {"max_seq_length": max_seq_length, "do_lower_case": False}
    (folder / transformer_path / "sentence_bert_config.json").write_text(json.dumps(sbert))


@pytest.mark.parametrize("case", ["bert", "roberta"])
def test_st_folder_multi_mode_pooling_matches_sentence_transformers(case: str, tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    make_encoder(tmp_path, case)
    flags = {
        "pooling_mode_cls_token": True,
        "pooling_mode_max_tokens": True,
        "pooling_mode_mean_tokens": True,
        "pooling_mode_mean_sqrt_len_tokens": True,
    }
    _write_st_folder(tmp_path, "", flags, max_seq_length=12)
    runner = EncoderRunner(tmp_path)
    assert runner.pooling_modes == ("cls", "max", "mean", "mean_sqrt_len_tokens")
    assert runner.max_length == 12 and runner.truncation is True and runner.normalize is False

    texts = random_sentences([3, 15, 0, 9, 30])  # two of them are cut to 12 tokens
    ours = runner.embed(texts)
    want = torch.from_numpy(SentenceTransformer(str(tmp_path), device="cpu").encode(texts))
    assert ours.shape == want.shape == (5, 4 * 48)
    assert (ours - want).abs().max().item() < 1e-4


def test_st_folder_with_transformer_in_a_subfolder(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    make_encoder(plain, "distilbert")
    st = tmp_path / "st"
    shutil.copytree(plain, st / "0_Transformer")
    _write_st_folder(st, "0_Transformer", {"pooling_mode": "max"}, max_seq_length=64)
    (st / "modules.json").write_text(
        json.dumps(
            [
                *json.loads((st / "modules.json").read_text()),
                {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
            ]
        )
    )
    texts = random_sentences([5, 9])
    hidden = EncoderRunner(plain).features(texts)
    want = torch.stack([torch.nn.functional.normalize(h.max(dim=0).values, dim=0) for h in hidden])
    ours = EncoderRunner(st).embed(texts)
    assert torch.allclose(ours, want, atol=1e-6)


def test_st_folder_with_an_unsupported_module_is_refused(tmp_path: Path) -> None:
    make_encoder(tmp_path, "bert")
    _write_st_folder(tmp_path, "", {"pooling_mode": "mean"}, max_seq_length=32)
    modules = json.loads((tmp_path / "modules.json").read_text())
    modules.append({"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"})
    (tmp_path / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ModelFormatError, match="Dense"):
        EncoderRunner(tmp_path)
