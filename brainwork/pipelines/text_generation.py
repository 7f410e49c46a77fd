"""`text-generation`: strings or chat messages in, Hugging Face's output shapes out."""

from __future__ import annotations

from typing import Any

from brainwork.catalog import DEFAULT_CHAT_MODEL
from brainwork.llm import LLM
from brainwork.sampling_params import SamplingParams


class TextGenerationPipeline:
    def __init__(self, model: str | None = None, **kwargs: Any) -> None:
        self.llm = LLM(model or DEFAULT_CHAT_MODEL, **kwargs)

    def __call__(
        self,
        inputs: Any,
        *,
        max_new_tokens: int = 256,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_p: float = 1.0,
        top_k: int | None = None,
        repetition_penalty: float = 1.0,
        seed: int | None = None,
        return_full_text: bool = True,
    ) -> list[Any]:
        """A string -> `[{"generated_text": str}]`; chat messages -> the conversation with the reply
        appended; a list of either -> a list of those results."""
        params = SamplingParams(
            max_tokens=max_new_tokens,
            temperature=temperature if do_sample else 0.0,
            top_p=top_p,
            top_k=top_k,
            repetition_penalty=repetition_penalty,
            seed=seed,
        )
        if _is_chat(inputs):
            return self._chat(inputs, params)
        if isinstance(inputs, str):
            return self._text(inputs, params, return_full_text)
        if isinstance(inputs, list) and inputs:
            return [self._chat(x, params) if _is_chat(x) else self._text(x, params, return_full_text) for x in inputs]
        raise ValueError("inputs: expected a string, chat messages, or a non-empty list of them")

    def _text(self, prompt: Any, params: SamplingParams, full: bool) -> list[dict[str, Any]]:
        if not isinstance(prompt, str) or not prompt:
            raise ValueError("inputs: expected a non-empty string prompt")
        out = self.llm.generate([prompt], params)[0].outputs[0].text
        return [{"generated_text": prompt + out if full else out}]

    def _chat(self, messages: list[dict[str, Any]], params: SamplingParams) -> list[dict[str, Any]]:
        reply = self.llm.chat(messages, params)[0].outputs[0].text
        return [{"generated_text": [*messages, {"role": "assistant", "content": reply}]}]


def _is_chat(x: Any) -> bool:
    return isinstance(x, list) and bool(x) and all(isinstance(m, dict) for m in x)
