"""brainwork's GGUF tokenizer must encode exactly like llama.cpp's own tokenizer.

For each packaged GGUF model, >= 1,000 varied strings (tests/tokenizer_corpus.py) are encoded with
`tokenizer_from_gguf` and with llama.cpp (`/tokenize`, add_special=False, parse_special=True); the
token ids must be identical. Pre-tokenizers the three models do not use (llama-bpe, gpt-2,
default, qwen2) and the SentencePiece `add_space_prefix` flag are checked the same way on copies of
the GGUF files whose one metadata value was rewritten.
"""

from __future__ import annotations

import shutil
import struct
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from brainwork.loader.gguf_reader import GGUFContainer
from brainwork.tokenizer.gguf_tokenizer import SUPPORTED_PRE, tokenizer_from_gguf
from tests.refs.llamacpp import LlamaCpp
from tests.tokenizer_corpus import make_corpus

# the model's special-token texts that the corpus embeds in ordinary text
SPECIALS = {
    "smollm2": ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<file_sep>", "<jupyter_code>"],
    "qwen": [
        "<|im_start|>",
        "<|im_end|>",
        "<|endoftext|>",
        "<tool_call>",
        "</tool_call>",
        "<|fim_prefix|>",
        "<|file_sep|>",
        "</s>",
    ],
    "gemma": [
        "<start_of_turn>",
        "<end_of_turn>",
        "<bos>",
        "<eos>",
        "<unused12>",
        "<table>",
        "</td>",
        "[multimodal]",
        "<start_of_image>",
        "\n\n",
        "    ",
        "\t\t",
    ],
}
FIXTURES = {"smollm2": "smollm2_gguf", "qwen": "qwen_gguf", "gemma": "gemma_gguf"}
MAX_REPORTED = 15


@dataclass
class Case:
    name: str
    path: Path
    metadata: dict
    tok: Tokenizer
    build_s: float
    llama: LlamaCpp


@pytest.fixture(scope="module", params=sorted(FIXTURES))
def case(request: pytest.FixtureRequest):
    path = Path(request.getfixturevalue(FIXTURES[request.param]))
    metadata = GGUFContainer(path).metadata
    t0 = time.perf_counter()
    tok = tokenizer_from_gguf(metadata)
    build_s = time.perf_counter() - t0
    with LlamaCpp(path) as llama:
        yield Case(request.param, path, metadata, tok, build_s, llama)


def _mismatches(tok: Tokenizer, llama: LlamaCpp, texts: list[str]) -> list[str]:
    ours = [e.ids for e in tok.encode_batch(texts, add_special_tokens=False)]
    bad = []
    for text, ids in zip(texts, ours, strict=True):
        ref = llama.tokenize(text, add_special=False, parse_special=True)
        if ids != ref:
            bad.append(f"{text!r}\n    brainwork: {ids}\n    llama.cpp: {ref}")
    return bad


def _report(bad: list[str], n: int) -> str:
    return f"{len(bad)} of {n} strings differ from llama.cpp:\n" + "\n".join(bad[:MAX_REPORTED])


def test_corpus_is_large_varied_and_deterministic() -> None:
    corpus = make_corpus(SPECIALS["qwen"])
    assert len(corpus) >= 1000
    assert len(set(corpus)) >= 1000
    assert corpus == make_corpus(SPECIALS["qwen"])


def test_encode_matches_llamacpp(case: Case) -> None:
    corpus = make_corpus(SPECIALS[case.name])
    assert len(corpus) >= 1000
    bad = _mismatches(case.tok, case.llama, corpus)
    assert not bad, _report(bad, len(corpus))


def test_special_tokens_encode_as_one_token(case: Case) -> None:
    tokens = case.metadata["tokenizer.ggml.tokens"]
    for text in SPECIALS[case.name]:
        ids = case.tok.encode(text, add_special_tokens=False).ids
        assert ids == [tokens.index(text)], text
        assert ids == case.llama.tokenize(text), text
        wrapped = case.tok.encode(f"a{text}b", add_special_tokens=False).ids
        assert tokens.index(text) in wrapped, text


def test_no_bos_or_eos_added(case: Case) -> None:
    assert case.tok.post_processor is None
    for text in ["Hello world", "", " x "]:
        assert case.tok.encode(text, add_special_tokens=True).ids == case.tok.encode(text, add_special_tokens=False).ids


def test_decode_round_trip(case: Case) -> None:
    corpus = make_corpus(SPECIALS[case.name])
    if case.metadata["tokenizer.ggml.model"] == "llama":
        # SentencePiece vocabularies write spaces as U+2581, so a literal U+2581 decodes as a space
        corpus = [t for t in corpus if "\u2581" not in t]
    else:
        # bytes whose byte-level character is not in the vocabulary get no token (as in llama.cpp)
        vocab = set(case.metadata["tokenizer.ggml.tokens"])
        lost = {b for b, c in _gpt2_byte_chars().items() if c not in vocab}
        corpus = [t for t in corpus if not lost & set(t.encode())]
    assert len(corpus) > 1000
    encodings = case.tok.encode_batch(corpus, add_special_tokens=False)
    bad = [
        f"{text!r} -> {decoded!r}"
        for text, enc in zip(corpus, encodings, strict=True)
        if (decoded := case.tok.decode(enc.ids, skip_special_tokens=False)) != text
    ]
    assert not bad, f"{len(bad)} of {len(corpus)} do not round-trip:\n" + "\n".join(bad[:MAX_REPORTED])


def _gpt2_byte_chars() -> dict[int, str]:
    """GPT-2's byte -> printable character table (byte-level BPE)."""
    keep = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    extra = (b for b in range(256) if b not in keep)
    return {b: chr(0x100 + n) for n, b in enumerate(extra)} | {b: chr(b) for b in keep}


def test_skip_special_tokens_drops_control_tokens(case: Case) -> None:
    control = next(t for t in SPECIALS[case.name] if t.startswith("<"))
    ids = case.tok.encode(f"{control}Hello", add_special_tokens=False).ids
    assert case.tok.decode(ids, skip_special_tokens=True) == "Hello"


def test_build_time(case: Case) -> None:
    # Gemma 3's 262k-token vocabulary takes ~3 s on 2 cores; leave room for a busy machine
    assert case.build_s < 20, f"{case.name}: {case.build_s:.1f} s to build the tokenizer"


# --- pre-tokenizers and flags the packaged models do not use, on rewritten copies ---


def _rewrite_string(src: Path, dst: Path, key: str, value: str) -> None:
    """Copy a GGUF file with the string metadata value `key` replaced (header re-aligned)."""
    data = src.read_bytes()
    pos = 8
    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}

    def read(fmt: str) -> int:
        nonlocal pos
        (v,) = struct.unpack_from(fmt, data, pos)
        pos += struct.calcsize(fmt)
        return v

    def skip_string() -> bytes:
        nonlocal pos
        n = read("<Q")
        pos += n
        return data[pos - n : pos]

    n_tensors, n_kv = read("<Q"), read("<Q")
    span, align = None, 32
    for _ in range(n_kv):
        name = skip_string().decode()
        vtype = read("<I")
        start = pos
        if vtype == 8:
            skip_string()
        elif vtype == 9:
            atype, count = read("<I"), read("<Q")
            if atype == 8:
                for _ in range(count):
                    skip_string()
            else:
                pos += sizes[atype] * count
        else:
            pos += sizes[vtype]
        if name == key:
            span = (start, pos)
        elif name == "general.alignment":
            (align,) = struct.unpack_from("<I", data, start)
    for _ in range(n_tensors):
        skip_string()
        n_dims = read("<I")
        pos += 8 * n_dims + 4 + 8
    data_start = (pos + align - 1) // align * align
    encoded = value.encode()
    header = data[: span[0]] + struct.pack("<Q", len(encoded)) + encoded + data[span[1] : pos]
    with dst.open("wb") as f:
        f.write(header + b"\0" * (-len(header) % align))
        f.write(memoryview(data)[data_start:])


@pytest.mark.parametrize("pre", ["llama-bpe", "gpt-2", "default", "qwen2"])
def test_pre_tokenizer_matches_llamacpp(pre: str, smollm2_gguf: Path, tmp_path: Path) -> None:
    path = tmp_path / f"smollm2-{pre}.gguf"
    _rewrite_string(Path(smollm2_gguf), path, "tokenizer.ggml.pre", pre)
    metadata = GGUFContainer(path).metadata
    assert metadata["tokenizer.ggml.pre"] == pre
    tok = tokenizer_from_gguf(metadata)
    corpus = make_corpus(SPECIALS["smollm2"])
    own = tokenizer_from_gguf(GGUFContainer(smollm2_gguf).metadata)  # pre "smollm"
    probe = "a  1"  # "smollm" isolates digits first: "a", "  ", "1"; the others: "a", " ", " 1"
    with LlamaCpp(path) as llama:
        # the rewritten value took effect in llama.cpp
        assert llama.tokenize(probe) != own.encode(probe, add_special_tokens=False).ids
        bad = _mismatches(tok, llama, corpus)
    assert not bad, _report(bad, len(corpus))


def test_spm_add_space_prefix_matches_llamacpp(gemma_gguf: Path, tmp_path: Path) -> None:
    path = tmp_path / "gemma-prefix.gguf"
    shutil.copyfile(gemma_gguf, path)
    key = b"tokenizer.ggml.add_space_prefix"
    with path.open("r+b") as f:
        head = f.read(64 << 20)
        at = head.index(key) + len(key)
        assert struct.unpack_from("<IB", head, at) == (7, 0)  # bool false
        f.seek(at + 4)
        f.write(b"\1")
    metadata = GGUFContainer(path).metadata
    assert metadata["tokenizer.ggml.add_space_prefix"] is True
    tok = tokenizer_from_gguf(metadata)
    corpus = make_corpus(SPECIALS["gemma"])[::3]
    with LlamaCpp(path) as llama:
        bad = _mismatches(tok, llama, corpus)
    assert not bad, _report(bad, len(corpus))
    ids = tok.encode("Hello world", add_special_tokens=False).ids
    assert tok.decode(ids) == "Hello world"


# --- errors and the pre-tokenizer table ---

_TOY_TOKENS = ["<|endoftext|>", "a", "b", "ab", "Ġ", "Ġab", "1", "2"]


def _toy(**overrides) -> dict:
    metadata = {
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": "gpt-2",
        "tokenizer.ggml.tokens": _TOY_TOKENS,
        "tokenizer.ggml.token_type": [3] + [1] * (len(_TOY_TOKENS) - 1),
        "tokenizer.ggml.merges": ["a b", "Ġ ab"],
    }
    metadata.update(overrides)
    return metadata


def test_unknown_model_raises() -> None:
    with pytest.raises(ValueError, match="wordpiece-x"):
        tokenizer_from_gguf(_toy(**{"tokenizer.ggml.model": "wordpiece-x"}))


def test_unknown_pre_raises() -> None:
    with pytest.raises(ValueError, match="no-such-pre"):
        tokenizer_from_gguf(_toy(**{"tokenizer.ggml.pre": "no-such-pre"}))


@pytest.mark.parametrize("pre", SUPPORTED_PRE)
def test_every_supported_pre_builds(pre: str) -> None:
    tok = tokenizer_from_gguf(_toy(**{"tokenizer.ggml.pre": pre}))
    assert tok.encode("ab ab<|endoftext|>", add_special_tokens=False).ids[-1] == 0
    assert tok.decode(tok.encode("ab ab 12", add_special_tokens=False).ids) == "ab ab 12"
