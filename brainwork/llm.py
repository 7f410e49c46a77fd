"""`LLM`: the offline facade in vLLM's shape. It has a model, a tokenizer and an engine."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from brainwork.catalog import DEFAULT_CHAT_MODEL
from brainwork.engine.generator import Generator
from brainwork.loader.decoder import load_decoder
from brainwork.outputs import CompletionOutput, RequestOutput
from brainwork.sampling_params import SamplingParams
from brainwork.store import resolve_model

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class LLM:
    """A decoder model ready to generate.

    `model` is a catalog name (`brainwork models`), a GGUF file, a Hugging Face folder or a hub
    id. `max_model_len` caps the context window (default: the model's, at most 8192 tokens).
    """

    def __init__(
        self,
        model: str = DEFAULT_CHAT_MODEL,
        *,
        dtype: str = "float32",
        max_model_len: int | None = None,
        progress: bool = True,
    ) -> None:
        if dtype not in _DTYPES:
            raise ValueError(f"dtype: expected one of {', '.join(_DTYPES)}, got {dtype!r}")
        self.resolved = resolve_model(model, progress=progress)
        loaded = load_decoder(self.resolved, _DTYPES[dtype], progress=progress)
        self.model, self.config, self.tokenizer = loaded.model, loaded.config, loaded.tokenizer
        self.quantization = loaded.quantization
        limit = min(self.config.max_position_embeddings, 8192)
        if max_model_len is not None and max_model_len < 2:
            raise ValueError(f"max_model_len must be >= 2, got {max_model_len}")
        self.max_model_len = min(max_model_len, self.config.max_position_embeddings) if max_model_len else limit
        self.engine = Generator(self.model, self.config, self.tokenizer, _DTYPES[dtype], self.max_model_len)
        self._ids = itertools.count()

    # ---- prompts ------------------------------------------------------------------------
    def _prompt_ids(self, prompt: Any, index: int) -> tuple[str | None, list[int]]:
        if isinstance(prompt, str):
            if not prompt:
                raise ValueError(f"prompts[{index}]: empty prompt")
            return prompt, self.tokenizer.encode(prompt)
        if isinstance(prompt, dict) and "prompt_token_ids" in prompt:
            ids = prompt["prompt_token_ids"]
            if not isinstance(ids, list) or not all(isinstance(t, int) for t in ids):
                raise ValueError(f"prompts[{index}].prompt_token_ids: expected a list of ints")
            return None, ids
        raise ValueError(
            f"prompts[{index}]: expected a string or {{'prompt_token_ids': [...]}}, got {type(prompt).__name__}"
        )

    # ---- generation -----------------------------------------------------------------------
    def generate(
        self,
        prompts: str | Sequence[Any],
        sampling_params: SamplingParams | Sequence[SamplingParams] | None = None,
    ) -> list[RequestOutput]:
        """Complete each prompt; one `RequestOutput` per prompt, in order."""
        items = [prompts] if isinstance(prompts, (str, dict)) else list(prompts)
        if not items:
            raise ValueError("prompts: empty list")
        params = _params_list(sampling_params, len(items))
        encoded = [self._prompt_ids(p, i) for i, p in enumerate(items)]
        for (_, ids), p in zip(encoded, params, strict=True):
            self.engine.check_prompt(ids, p)  # refuse bad input before any work is done
        return [self._run(text, ids, p) for (text, ids), p in zip(encoded, params, strict=True)]

    def _run(self, prompt: str | None, ids: list[int], params: SamplingParams) -> RequestOutput:
        outs = [self.engine.generate(ids, params, index=i) for i in range(params.n)]
        return RequestOutput(str(next(self._ids)), prompt, ids, outs, finished=True)

    def stream(self, prompt: str | Any, sampling_params: SamplingParams | None = None) -> Iterator[RequestOutput]:
        """Yield `RequestOutput` deltas (new text and token of this step) as tokens are made."""
        text, ids = self._prompt_ids(prompt, 0)
        params = sampling_params or SamplingParams()
        if params.n != 1:
            raise ValueError("n: streaming supports n=1")
        rid = str(next(self._ids))
        for d in self.engine.stream(ids, params):
            out = CompletionOutput(0, d.text, [d.token_id], d.finish_reason, d.stop_reason)
            yield RequestOutput(rid, text, ids, [out], finished=d.finish_reason is not None)

    def chat(
        self,
        messages: list[dict[str, Any]] | list[list[dict[str, Any]]],
        sampling_params: SamplingParams | None = None,
        *,
        add_generation_prompt: bool = True,
        chat_template_kwargs: dict[str, Any] | None = None,
    ) -> list[RequestOutput]:
        """Answer one conversation, or several (a list of message lists)."""
        conversations = messages if messages and isinstance(messages[0], list) else [messages]
        prompts = [
            {"prompt_token_ids": self.encode_chat(c, add_generation_prompt, chat_template_kwargs)}
            for c in conversations
        ]
        return self.generate(prompts, sampling_params)

    def encode_chat(
        self, messages: Any, add_generation_prompt: bool = True, chat_template_kwargs: dict[str, Any] | None = None
    ) -> list[int]:
        return self.tokenizer.encode_chat(messages, add_generation_prompt, **(chat_template_kwargs or {}))


def _params_list(p: SamplingParams | Sequence[SamplingParams] | None, n: int) -> list[SamplingParams]:
    if p is None:
        return [SamplingParams()] * n
    if isinstance(p, SamplingParams):
        return [p] * n
    if len(p) != n:
        raise ValueError(f"sampling_params: {len(p)} given for {n} prompts")
    return list(p)
