"""`Tokenizer`: one wrapper over a `tokenizers.Tokenizer` for GGUF and Hugging Face models.

It owns what generation needs besides the vocabulary: which special tokens start and end a
sequence, whether BOS is prepended, and the chat template.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import tokenizers

from brainwork.tokenizer.chat_template import render_chat_template
from brainwork.tokenizer.messages import flatten_messages

# Texts llama.cpp also treats as end-of-generation when a GGUF declares them as control tokens.
_END_OF_TURN_TEXTS = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>")


class Tokenizer:
    def __init__(
        self,
        backend: tokenizers.Tokenizer,
        *,
        bos_token_id: int | None,
        eos_token_ids: tuple[int, ...],
        add_bos: bool,
        chat_template: str | None,
        pad_token_id: int | None = None,
    ) -> None:
        self.backend = backend
        self.bos_token_id = bos_token_id
        self.eos_token_ids = eos_token_ids
        self.add_bos = add_bos
        self.chat_template = chat_template
        self.pad_token_id = pad_token_id

    # ---- construction ---------------------------------------------------------------------
    @classmethod
    def from_gguf(cls, md: dict[str, Any]) -> Tokenizer:
        from brainwork.tokenizer.gguf_tokenizer import tokenizer_from_gguf

        backend = tokenizer_from_gguf(md)
        tokens: list[str] = md["tokenizer.ggml.tokens"]
        types: list[int] = md.get("tokenizer.ggml.token_type", [])
        eos = [md.get("tokenizer.ggml.eos_token_id"), md.get("tokenizer.ggml.eot_token_id")]
        eos += [i for i, t in enumerate(tokens) if t in _END_OF_TURN_TEXTS and i < len(types) and types[i] == 3]
        return cls(
            backend,
            bos_token_id=md.get("tokenizer.ggml.bos_token_id"),
            eos_token_ids=tuple(dict.fromkeys(e for e in eos if e is not None)),
            add_bos=bool(md.get("tokenizer.ggml.add_bos_token", False)),
            chat_template=md.get("tokenizer.chat_template"),
            pad_token_id=md.get("tokenizer.ggml.padding_token_id"),
        )

    @classmethod
    def from_folder(cls, folder: Path, eos_token_ids: tuple[int, ...] = ()) -> Tokenizer:
        """A Hugging Face folder: `tokenizer.json` plus `tokenizer_config.json` when present."""
        backend = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
        conf: dict[str, Any] = {}
        if (folder / "tokenizer_config.json").is_file():
            conf = json.loads((folder / "tokenizer_config.json").read_text())
        template = conf.get("chat_template")
        if (folder / "chat_template.jinja").is_file():
            template = (folder / "chat_template.jinja").read_text()
        if isinstance(template, list):  # named templates: take the default one
            template = next((t["template"] for t in template if t.get("name") == "default"), None)

        def token_id(key: str) -> int | None:
            value = conf.get(key)
            text = value.get("content") if isinstance(value, dict) else value
            return backend.token_to_id(text) if isinstance(text, str) else None

        eos = tuple(
            dict.fromkeys([*eos_token_ids, *([token_id("eos_token")] if token_id("eos_token") is not None else [])])
        )
        return cls(
            backend,
            bos_token_id=token_id("bos_token"),
            eos_token_ids=eos,
            add_bos=False,  # tokenizer.json's post-processor adds BOS itself when the model wants it
            chat_template=template,
            pad_token_id=token_id("pad_token"),
        )

    # ---- text <-> ids ---------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        ids = self.backend.encode(text, add_special_tokens=add_special_tokens).ids
        wants_bos = add_special_tokens and self.add_bos and self.bos_token_id is not None
        if wants_bos and (not ids or ids[0] != self.bos_token_id):
            ids = [self.bos_token_id, *ids]
        return ids

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return self.backend.decode(ids, skip_special_tokens=skip_special_tokens)

    def token_text(self, token_id: int) -> str:
        return self.backend.id_to_token(token_id) or ""

    @property
    def bos_token(self) -> str:
        return self.token_text(self.bos_token_id) if self.bos_token_id is not None else ""

    @property
    def eos_token(self) -> str:
        return self.token_text(self.eos_token_ids[0]) if self.eos_token_ids else ""

    # ---- chat -----------------------------------------------------------------------------
    def apply_chat_template(
        self, messages: list[dict[str, Any]], add_generation_prompt: bool = True, **kwargs: Any
    ) -> str:
        """Render validated messages; a model without a template gets a plain role-prefixed one."""
        flat = flatten_messages(messages)
        template = self.chat_template or _FALLBACK_TEMPLATE
        specials = {"bos_token": self.bos_token, "eos_token": self.eos_token}
        return render_chat_template(
            template, flat, add_generation_prompt=add_generation_prompt, special_tokens=specials, **kwargs
        )

    def encode_chat(
        self, messages: list[dict[str, Any]], add_generation_prompt: bool = True, **kwargs: Any
    ) -> list[int]:
        text = self.apply_chat_template(messages, add_generation_prompt, **kwargs)
        # the template already wrote BOS where the model wants it; don't add a second one
        ids = self.backend.encode(text, add_special_tokens=False).ids
        return ids


# For base models that ship no template (Gemma 3 270M): a minimal, readable transcript.
_FALLBACK_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{{ m['role'] | capitalize }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)
