"""A `tokenizers.Tokenizer` built from GGUF metadata that encodes exactly like llama.cpp.

Two GGUF vocabulary kinds are supported (`tokenizer.ggml.model`):

* ``gpt2``: byte-level BPE (`tokens` + `merges`). llama.cpp splits the text with a list of
  regexes chosen by `tokenizer.ggml.pre`, each one applied to the pieces left by the previous
  one (matches and the text between matches both become pieces), byte-encodes every piece the
  GPT-2 way and merges by rank. Here: one `Split(..., "isolated")` per regex, then
  `ByteLevel(use_regex=False)`, then a BPE model with the same ranks.
* ``llama``: SentencePiece-style BPE (`tokens` + `scores` + `token_type`). llama.cpp replaces
  spaces by U+2581, starts from UTF-8 characters and repeatedly merges the adjacent pair whose
  concatenation is a vocabulary token of highest score (ties: leftmost); what never becomes a
  token falls back to `<0xXX>` byte tokens. A BPE model reproduces that when its merges are all
  pairs (a, b) with a, b and a+b in the vocabulary, ranked by the score of a+b (what HF's
  SentencePiece converters do), with `byte_fallback`.

Special tokens: llama.cpp first cuts the text at every occurrence of a control, user-defined or
unknown token (parse_special=True), longest token text first; those become added tokens here
(control -> `special=True`). No post-processor: BOS/EOS are the caller's business
(`tokenizer.ggml.add_bos_token`).

Decoding (`decode(ids, skip_special_tokens=False)`) gives the text back, except where the encoding
itself loses it, as in llama.cpp: a literal U+2581 in SentencePiece text comes back as a space,
bytes whose byte-level character is missing from a gpt2 vocabulary get no token, and with
`add_space_prefix` every piece after a special token gains a leading space.
"""

from __future__ import annotations

from typing import Any

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

# GGUF token types (llama_token_type)
_NORMAL, _UNKNOWN, _CONTROL, _USER_DEFINED, _UNUSED, _BYTE = 1, 2, 3, 4, 5, 6

# --- pre-tokenizer regexes, as llama.cpp's llm_tokenizer_bpe (src/llama-vocab.cpp) lists them ---
_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
_CONTRACTIONS = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
_LLAMA3 = (
    _CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2 = (
    _CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN35 = (
    _CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_GPT4O = (
    r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+" + _CONTRACTIONS + "?"
    r"|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*" + _CONTRACTIONS + "?"
    r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_TEKKEN = (
    r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+"
    r"|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*"
    r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_GPT2_FAMILY_DIGITS = [r"\p{N}", _GPT2]

# name -> (regexes, ignore_merges)
_PRE: dict[str, tuple[list[str], bool]] = {}


def _register(names: str, regexes: list[str], ignore_merges: bool = False) -> None:
    for name in names.split():
        _PRE[name] = (regexes, ignore_merges)


_register("default", [r"[\p{P}\$\+<=>\^~\|]+", _GPT2, r"\p{N}+", r"[0-9][0-9][0-9]"])
_register(
    "llama3 llama-v3 llama-bpe falcon3 falcon-h1 pixtral midm-2.0 lfm2 jina-v5-nano", [_LLAMA3], ignore_merges=True
)
_register("dbrx smaug-bpe glm4 chatglm-bpe", [_LLAMA3])
_register(
    "gpt-2 phi-2 jina-es jina-de gigachat jina-v2-es jina-v2-de a.x-4.0 mellum modern-bert "
    "exaone4 mpt olmo jais trillion granite-docling jina-v1-en jina-v2-code roberta-bpe",
    [_GPT2],
)
_register("starcoder refact command-r smollm codeshell exaone minerva-7b mellum2", _GPT2_FAMILY_DIGITS)
_register("qwen2 deepseek-r1-qwen kormo f2llmv2 megrez stablelm2 hunyuan solar-open", [_QWEN2])
_register("qwen35", [_QWEN35])
_register(
    "falcon",
    [
        r"[\p{P}\$\+<=>\^~\|`]+",
        _GPT2,
        r"[0-9][0-9][0-9]",
    ],
)
_register("gpt-4o llama4 kanana2 talkie minimax-m2", [_GPT4O])
_register("tekken", [_TEKKEN], ignore_merges=True)
_register(
    "seed-coder",
    [
        _CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+"
        r"|\s*[\r\n]+|\s+(?!\S)|\s+"
    ],
)
_register("grok-2", [_QWEN2])
_register("poro-chat bloom gpt3-finnish", [r" ?[^(\s|.,!?…。，、।۔،)]+"])
_register("viking", [r" ?[^(\s|.,!?…。，、।۔،)]+", r"\p{N}"])

SUPPORTED_PRE = tuple(sorted(_PRE))

# llama.cpp marks these texts as control tokens whatever their GGUF type (end-of-generation / FIM
# auto-detection in llama_vocab::impl::load), so they are cut out as specials too.
_EOG_TEXTS = {
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
}
_FIM_TEXTS = {  # metadata key whose presence disables the name-based detection -> candidate texts
    "tokenizer.ggml.fim_pre_token_id": [
        "<|fim_prefix|>",
        "<fim-prefix>",
        "<fim_prefix>",
        "<｜fim▁begin｜>",
        "<PRE>",
        "▁<PRE>",
        "<|code_prefix|>",
        "<|prefix|>",
    ],
    "tokenizer.ggml.fim_suf_token_id": [
        "<|fim_suffix|>",
        "<fim-suffix>",
        "<fim_suffix>",
        "<｜fim▁hole｜>",
        "<SUF>",
        "▁<SUF>",
        "<|code_suffix|>",
        "<|suffix|>",
    ],
    "tokenizer.ggml.fim_mid_token_id": [
        "<|fim_middle|>",
        "<fim-middle>",
        "<fim_middle>",
        "<｜fim▁end｜>",
        "<MID>",
        "▁<MID>",
        "<|code_middle|>",
        "<|middle|>",
    ],
    "tokenizer.ggml.fim_pad_token_id": ["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"],
    "tokenizer.ggml.fim_rep_token_id": ["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"],
    "tokenizer.ggml.fim_sep_token_id": ["<|file_sep|>"],
}
_GPT_OSS_USER_DEFINED = {"<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"}


def tokenizer_from_gguf(metadata: dict[str, Any]) -> Tokenizer:
    """A `tokenizers.Tokenizer` equivalent to llama.cpp's tokenizer (parse_special=True).

    Raises ValueError naming an unsupported `tokenizer.ggml.model` or `tokenizer.ggml.pre`.
    """
    kind = metadata.get("tokenizer.ggml.model")
    tokens = _tokens(metadata)
    if kind == "gpt2":
        tok = _byte_level_bpe(metadata, tokens)
    elif kind == "llama":
        tok = _sentencepiece_bpe(metadata, tokens)
    else:
        raise ValueError(f"unsupported tokenizer.ggml.model {kind!r} (supported: 'gpt2', 'llama')")
    _add_special_tokens(tok, metadata, tokens)
    return tok


def _tokens(metadata: dict[str, Any]) -> list[str]:
    if "tokenizer.ggml.tokens" not in metadata:
        raise ValueError("GGUF metadata has no tokenizer.ggml.tokens")
    tokens = list(metadata["tokenizer.ggml.tokens"])
    for i, t in enumerate(tokens):
        if not t:  # llama.cpp renames empty tokens the same way
            tokens[i] = f"[EMPTY_{i}]"
    return tokens


def _vocab(tokens: list[str]) -> dict[str, int]:
    vocab: dict[str, int] = {}
    for i, t in enumerate(tokens):
        vocab.setdefault(t, i)
    return vocab


def _byte_level_bpe(metadata: dict[str, Any], tokens: list[str]) -> Tokenizer:
    pre = metadata.get("tokenizer.ggml.pre") or "default"  # llama.cpp: missing -> default
    if pre not in _PRE:
        raise ValueError(f"unsupported tokenizer.ggml.pre {pre!r} for a gpt2 vocabulary")
    regexes, ignore_merges = _PRE[pre]
    vocab = _vocab(tokens)
    merges = []
    for m in metadata.get("tokenizer.ggml.merges", []):
        pos = m.find(" ", 1)  # llama.cpp splits at the first space after the first character
        if pos < 0:
            continue
        a, b = m[:pos], m[pos + 1 :]
        if a in vocab and b in vocab and a + b in vocab:
            merges.append((a, b))
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=ignore_merges, fuse_unk=False))
    steps = [pre_tokenizers.Split(Regex(r), behavior="isolated") for r in regexes]
    steps.append(pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False))
    missing = [c for c in pre_tokenizers.ByteLevel.alphabet() if c not in vocab]
    if missing:
        # llama.cpp keeps a byte missing from the vocabulary as a symbol that no merge crosses and
        # that yields no token; HF's BPE would drop it before merging, so isolate it instead
        steps.append(
            pre_tokenizers.Split(
                Regex("[" + "".join(f"\\x{{{ord(c):x}}}" for c in sorted(missing)) + "]"), behavior="isolated"
            )
        )
    tok.pre_tokenizer = pre_tokenizers.Sequence(steps)
    tok.decoder = decoders.ByteLevel()
    return tok


def _sentencepiece_bpe(metadata: dict[str, Any], tokens: list[str]) -> Tokenizer:
    scores = metadata.get("tokenizer.ggml.scores")
    if scores is None:
        scores = [0.0] * len(tokens)
    vocab = _vocab(tokens)
    # every split of every token into two vocabulary tokens is a merge, ranked by the merged
    # token's score (higher first), as llama.cpp's llm_tokenizer_spm picks the best-scoring pair
    ranked = []
    for i, t in enumerate(tokens):
        if len(t) < 2 or vocab[t] != i:
            continue
        s = -float(scores[i])
        for k in range(1, len(t)):
            a = t[:k]
            if a in vocab:
                b = t[k:]
                if b in vocab:
                    ranked.append((s, i, k, a, b))
    ranked.sort()
    tok = Tokenizer(
        models.BPE(vocab=vocab, merges=[(a, b) for _, _, _, a, b in ranked], byte_fallback=True, fuse_unk=False)
    )
    add_prefix = bool(metadata.get("tokenizer.ggml.add_space_prefix", True))  # SPM default: true
    replace = normalizers.Replace(" ", "\u2581")
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), replace]) if add_prefix else replace
    steps = [decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()]
    if add_prefix:
        steps.append(decoders.Strip(" ", 1, 0))
    tok.decoder = decoders.Sequence(steps)
    return tok


def _add_special_tokens(tok: Tokenizer, metadata: dict[str, Any], tokens: list[str]) -> None:
    """Register what llama.cpp's tokenizer_st_partition cuts out (control/user-defined/unknown)."""
    types = metadata.get("tokenizer.ggml.token_type")
    if types is None:
        types = [_NORMAL] * len(tokens)
    control = {i for i, t in enumerate(types) if t in (_CONTROL, _UNKNOWN)}
    user = {i for i, t in enumerate(types) if t == _USER_DEFINED}
    by_text = _vocab(tokens)
    names = set(_EOG_TEXTS)
    for key, texts in _FIM_TEXTS.items():
        if key not in metadata:
            names.update(texts)
    for text in names:
        i = by_text.get(text)
        if i is not None and i not in control and i not in user:
            control.add(i)
    for text in _GPT_OSS_USER_DEFINED:
        i = by_text.get(text)
        if i is not None:
            control.discard(i)
            user.add(i)
    if {"<|tool_response>", "</s>"} <= by_text.keys():  # llama.cpp's gemma4 workaround
        i = by_text["</s>"]
        control.discard(i)
        user.discard(i)

    rstrip: set[int] = set()
    model_name = str(metadata.get("general.name", "")).lower()
    if "phi-3" in model_name or "phi3" in model_name:
        rstrip = control | user
        for text, on in (("</s>", True), ("<unk>", False), ("<s>", False), ("<|endoftext|>", False)):
            if text in by_text:
                (rstrip.add if on else rstrip.discard)(by_text[text])

    added = [
        AddedToken(
            tokens[i], single_word=False, lstrip=False, rstrip=i in rstrip, normalized=False, special=i in control
        )
        for i in sorted(control | user)
        if by_text[tokens[i]] == i
    ]
    if added:
        tok.add_tokens(added)
