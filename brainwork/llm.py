"""`LLM`: the offline facade in vLLM's shape. It has a model, a tokenizer and an engine."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

from brainwork.catalog import DEFAULT_CHAT_MODEL
from brainwork.config import EngineConfig
from brainwork.engine.engine import LLMEngine
from brainwork.loader.decoder import load_decoder
from brainwork.outputs import CompletionOutput, Logprob, RequestOutput
from brainwork.quant.modes import check_quantization
from brainwork.sampling_params import SamplingParams
from brainwork.store import resolve_model

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class LLM:
    """A decoder model ready to generate, with a continuous-batching engine.

    `model` is a catalog name (`brainwork models`), a GGUF file, a Hugging Face folder or a hub
    id. `max_model_len` caps the context window (default: the model's, at most 8192 tokens).
    Engine settings (`max_num_seqs`, `max_num_batched_tokens`, `kv_cache_gib`, `block_size`,
    `enable_prefix_caching`, `num_kv_blocks`) pass through to `EngineConfig`.
    `dtype` is that of float weights, activations and the KV cache; `quantization` is how weight
    matrices are held: "none" (the default) dequantizes to `dtype`; "auto" keeps a GGUF file's
    4/8-bit blocks packed (int4/int8 kernels), "int8"/"int4" requantize any model
    (`brainwork.quant`). Packed weights are opt-in because their matmul takes a different path
    for small and large batches (bf16 kernel vs dequantized float32), so a request's greedy
    tokens could depend on what it is batched with; float weights give the same tokens alone or
    batched. "ggml" computes a GGUF file exactly as llama.cpp's CPU backend does (8-bit activation
    blocks, its summation order, a float16 KV cache and its flash attention: `brainwork.numerics`),
    so greedy output equals llama.cpp's token for token; a slow reference path, batch-invariant.
    """

    def __init__(
        self,
        model: str = DEFAULT_CHAT_MODEL,
        *,
        dtype: str = "float32",
        quantization: str = "none",
        max_model_len: int | None = None,
        progress: bool = True,
        **engine_args: Any,
    ) -> None:
        if dtype not in _DTYPES:
            raise ValueError(f"dtype: expected one of {', '.join(_DTYPES)}, got {dtype!r}")
        unknown = set(engine_args) - set(EngineConfig.__dataclass_fields__) - {"max_model_len"}
        if unknown:
            raise ValueError(f"unknown engine argument(s): {', '.join(sorted(unknown))}")
        if max_model_len is not None and max_model_len < 2:
            raise ValueError(f"max_model_len must be >= 2, got {max_model_len}")
        self.resolved = resolve_model(model, progress=progress)
        check_quantization(quantization)
        loaded = load_decoder(self.resolved, _DTYPES[dtype], progress=progress, quantization=quantization)
        self.model, self.config, self.tokenizer = loaded.model, loaded.config, loaded.tokenizer
        self.quantization = loaded.quantization
        self.weights_kept = loaded.kept  # how the matrices are held in memory, e.g. {"int4-exact": 210}
        limit = min(self.config.max_position_embeddings, 8192)
        self.max_model_len = min(max_model_len, self.config.max_position_embeddings) if max_model_len else limit
        self.engine_config = EngineConfig(max_model_len=self.max_model_len, **engine_args)
        self.engine = LLMEngine(self.model, self.config, self.tokenizer, self.engine_config)
        self._ids = itertools.count()
        self.progress = progress

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
        *,
        priority: Sequence[int] | None = None,
        use_tqdm: bool | None = None,
    ) -> list[RequestOutput]:
        """Complete every prompt, all batched together; one `RequestOutput` per prompt, in order.

        A request that fails inside the engine comes back with `error` set; the others complete.
        """
        rids = self._add(prompts, sampling_params, priority)
        final = {rid: _Accumulator(n) for rid, n in rids.items()}
        show = self.progress and len(rids) > 1 if use_tqdm is None else use_tqdm
        with tqdm(total=len(rids), desc="generating", unit="req", disable=not show) as bar:
            while self.engine.has_unfinished_requests():
                for out in self.engine.step():
                    final[out.request_id].add(out)
                    if out.finished:
                        bar.update(1)
        return [final[rid].result() for rid in rids]

    def stream(
        self,
        prompts: str | Sequence[Any],
        sampling_params: SamplingParams | Sequence[SamplingParams] | None = None,
        *,
        priority: Sequence[int] | None = None,
    ) -> Iterator[RequestOutput]:
        """Yield `RequestOutput` deltas (each step's new text and tokens) for one prompt or many,
        as tokens are made; with many, deltas of different requests interleave (tell them apart
        by `request_id`, which counts up in prompt order)."""
        rids = self._add(prompts, sampling_params, priority)
        try:
            while self.engine.has_unfinished_requests():
                yield from self.engine.step()
        finally:  # the caller stopped reading: free the requests' blocks now
            for rid in rids:
                self.engine.abort_request(rid)

    def _add(
        self,
        prompts: str | Sequence[Any],
        sampling_params: SamplingParams | Sequence[SamplingParams] | None,
        priority: Sequence[int] | None,
    ) -> dict[str, int]:
        """Validate every prompt first (nothing is queued if one is bad), then queue them all."""
        items = [prompts] if isinstance(prompts, (str, dict)) else list(prompts)
        if not items:
            raise ValueError("prompts: empty list")
        params = _params_list(sampling_params, len(items))
        if priority is not None and len(priority) != len(items):
            raise ValueError(f"priority: {len(priority)} values given for {len(items)} prompts")
        encoded = [self._prompt_ids(p, i) for i, p in enumerate(items)]
        for i, ((_, ids), p) in enumerate(zip(encoded, params, strict=True)):
            try:
                self.engine.check_request(ids, p)
            except ValueError as e:
                if len(items) == 1:
                    raise
                raise ValueError(f"prompts[{i}]: {e}") from None
        if self.engine.has_unfinished_requests():
            raise RuntimeError("the engine is busy with a stream that was not read to its end")
        rids: dict[str, int] = {}
        for i, ((text, ids), p) in enumerate(zip(encoded, params, strict=True)):
            rid = str(next(self._ids))
            self.engine.add_request(rid, ids, p, prompt=text, priority=priority[i] if priority else 0)
            rids[rid] = p.n
        return rids

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


class _Accumulator:
    """Joins a request's deltas into the final `RequestOutput`."""

    def __init__(self, n: int) -> None:
        self.completions = [CompletionOutput(i, "", [], None) for i in range(n)]
        self.last: RequestOutput | None = None
        self.prompt_logprobs: list[dict[int, Logprob] | None] | None = None

    def add(self, out: RequestOutput) -> None:
        self.last = out
        if out.prompt_logprobs is not None:
            self.prompt_logprobs = out.prompt_logprobs
        for d in out.outputs:
            c = self.completions[d.index]
            c.text += d.text
            c.token_ids.extend(d.token_ids)
            c.finish_reason, c.stop_reason = d.finish_reason, d.stop_reason
            if d.logprobs is not None:
                c.logprobs = (c.logprobs or []) + d.logprobs
                c.cumulative_logprob = d.cumulative_logprob

    def result(self) -> RequestOutput:
        assert self.last is not None and self.last.finished
        out = self.last
        return RequestOutput(
            out.request_id,
            out.prompt,
            out.prompt_token_ids,
            self.completions,
            True,
            out.metrics,
            out.error,
            self.prompt_logprobs,
        )


def _params_list(p: SamplingParams | Sequence[SamplingParams] | None, n: int) -> list[SamplingParams]:
    if p is None:
        return [SamplingParams()] * n
    if isinstance(p, SamplingParams):
        return [p] * n
    if len(p) != n:
        raise ValueError(f"sampling_params: {len(p)} given for {n} prompts")
    return list(p)
