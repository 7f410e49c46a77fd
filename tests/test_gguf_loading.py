"""GGUF loading: name mapping, Q/K un-permutation and dequantization against transformers, and
clear errors for files that cannot be used."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType, GGUFWriter

from brainwork import LLM
from brainwork.errors import ModelFormatError, ModelNotFoundError
from brainwork.loader.decoder import load_decoder
from brainwork.loader.gguf import GGUFFile
from brainwork.loader.gguf_reader import GGUFContainer
from brainwork.store import resolve_model
from tests.test_decoder_parity import _logits_ours
from tests.tiny_gguf import dequantized_copy, write_llama_gguf
from tests.tiny_models import VOCAB, make_checkpoint

QTYPES = [
    GGMLQuantizationType.F32,
    GGMLQuantizationType.F16,
    GGMLQuantizationType.BF16,
    GGMLQuantizationType.Q8_0,
    GGMLQuantizationType.Q4_0,
    GGMLQuantizationType.Q4_1,
    GGMLQuantizationType.Q5_0,
]


@pytest.mark.parametrize("qtype", QTYPES, ids=lambda q: q.name)
def test_tiny_llama_gguf_matches_transformers(qtype: GGMLQuantizationType, tmp_path: Path) -> None:
    """Logits of a GGUF written like llama.cpp's converter equal transformers on the same
    (quantize-dequantized) weights within 1e-4: proves the name map, the Q/K un-permute, and
    the dequantization path."""
    ref = make_checkpoint(tmp_path / "hf", "llama")
    path = tmp_path / "tiny.gguf"
    write_llama_gguf(path, ref, qtype)
    ref = dequantized_copy(ref, qtype)
    if qtype in (GGMLQuantizationType.F16, GGMLQuantizationType.BF16):
        dtype = torch.float16 if qtype == GGMLQuantizationType.F16 else torch.bfloat16
        with torch.no_grad():
            for p in ref.parameters():
                if p.ndim == 2:
                    p.copy_(p.to(dtype).float())
    loaded = load_decoder(resolve_model(str(path)), progress=False)
    ids = torch.randint(0, VOCAB, (16,), generator=torch.Generator().manual_seed(3)).tolist()
    with torch.inference_mode():
        expected = ref(torch.tensor([ids])).logits[0]
    got = _logits_ours(loaded, ids, [16])
    assert (got - expected).abs().max().item() < 1e-4


def test_fast_reader_agrees_with_gguf_package(smollm2_gguf: Path) -> None:
    """Our header parser gives the same metadata and tensor table as the `gguf` package's reader."""
    import gguf

    ours = GGUFContainer(smollm2_gguf)
    ref = gguf.GGUFReader(smollm2_gguf)
    for key, field in ref.fields.items():
        if key.startswith("GGUF."):
            continue
        assert ours.metadata[key] == field.contents(), key
    assert [(t.name, t.qtype, t.offset, t.n_bytes) for t in ours.tensors] == [
        (t.name, t.tensor_type, int(t.data_offset), int(t.n_bytes)) for t in ref.tensors
    ]


def test_real_gguf_tensors_dequantize_like_gguf_package(qwen_gguf: Path) -> None:
    """Chunked dequantization equals the package's whole-tensor result for every type in the file."""
    import gguf

    f = GGUFFile(qwen_gguf)
    ref = {t.name: t for t in gguf.GGUFReader(qwen_gguf).tensors}
    seen = set()
    for t in f.tensors:
        if t.qtype.name in seen or t.qtype.name == "F32":
            continue
        seen.add(t.qtype.name)
        expected = gguf.quants.dequantize(ref[t.name].data, ref[t.name].tensor_type)
        got = f.dequantize(t, torch.float32).numpy()
        assert np.array_equal(got.reshape(expected.shape), expected), t.qtype.name
    assert {"Q8_0", "Q5_0", "Q4_K", "Q6_K"} <= seen


def test_unknown_model_name_lists_known_names() -> None:
    with pytest.raises(ModelNotFoundError, match=r"all-minilm-l6-v2.*smollm2-135m-instruct"):
        LLM("no-such-model")


def test_truncated_gguf_names_file(smollm2_gguf: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.gguf"
    with smollm2_gguf.open("rb") as src, cut.open("wb") as dst:
        dst.write(src.read(50_000_000))
    with pytest.raises(ModelFormatError, match=r"cut\.gguf.*truncated"):
        LLM(str(cut), progress=False)


def test_corrupt_gguf_names_file(smollm2_gguf: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    shutil.copyfile(smollm2_gguf, bad)
    with bad.open("r+b") as f:
        f.seek(24)
        f.write(b"\xff" * 64)  # smash the first metadata key's length
    with pytest.raises(ModelFormatError, match=r"bad\.gguf"):
        LLM(str(bad), progress=False)


def test_unsupported_architecture(tmp_path: Path) -> None:
    path = tmp_path / "mamba.gguf"
    w = GGUFWriter(str(path), "mamba")
    w.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(ModelFormatError, match="'mamba' is not supported"):
        LLM(str(path), progress=False)


def test_unsupported_quantization_type(tmp_path: Path) -> None:
    ref = make_checkpoint(tmp_path / "hf", "llama")
    path = tmp_path / "iq.gguf"
    write_llama_gguf(path, ref, GGMLQuantizationType.F32)
    f = GGUFFile(path)
    t = f.tensors[0]
    fake = type(t)(t.name, t.shape, GGMLQuantizationType.IQ2_XXS, t.offset, t.n_bytes)
    with pytest.raises(ModelFormatError, match=r"iq\.gguf.*IQ2_XXS"):
        f.dequantize(fake, torch.float32)


def test_empty_prompt_and_bad_messages() -> None:
    llm = LLM(progress=False)
    with pytest.raises(ValueError, match=r"prompts\[0\]"):
        llm.generate([""])
    with pytest.raises(ValueError, match=r"messages\[0\]\.role"):
        llm.chat([{"role": "wizard", "content": "hi"}])
    with pytest.raises(ValueError, match=r"messages\[1\]\.content"):
        llm.chat([{"role": "user", "content": "hi"}, {"role": "assistant", "content": 5}])
    with pytest.raises(ValueError, match="temperature"):
        from brainwork import SamplingParams

        SamplingParams(temperature=-1)


def test_prompt_longer_than_context_is_refused() -> None:
    llm = LLM(max_model_len=32, progress=False)
    with pytest.raises(ValueError, match=r"\d+ tokens does not fit the context window of 32"):
        llm.generate(["word " * 64])
