"""One-request-at-a-time generation over a contiguous KV cache.

The first generation path: prefill the prompt, then decode token by token, applying the sampler
chain and the stop rules. `stream()` yields a `CompletionOutput` delta per step so that callers
(the CLI's chat, streaming `LLM.generate`) show text as it comes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from brainwork.engine.contiguous_cache import ContiguousKVCache
from brainwork.engine.sampler import apply_penalties, sample
from brainwork.models.config import ModelConfig
from brainwork.outputs import CompletionOutput
from brainwork.sampling_params import SamplingParams
from brainwork.tokenizer.detokenizer import IncrementalDetokenizer
from brainwork.tokenizer.tokenizer import Tokenizer


@dataclass
class StepDelta:
    text: str
    token_id: int
    finish_reason: str | None
    stop_reason: int | str | None


class Generator:
    def __init__(
        self, model: nn.Module, config: ModelConfig, tokenizer: Tokenizer, dtype: torch.dtype, max_model_len: int
    ) -> None:
        self.model, self.config, self.tokenizer = model, config, tokenizer
        self.dtype = dtype
        self.max_model_len = max_model_len

    def check_prompt(self, prompt_ids: list[int], params: SamplingParams) -> None:
        if not prompt_ids:
            raise ValueError("prompt: empty prompt (no tokens to start from)")
        if len(prompt_ids) >= self.max_model_len:
            raise ValueError(
                f"prompt: {len(prompt_ids)} tokens does not fit the context window of {self.max_model_len} tokens "
                "(at least one token must be left to generate)"
            )
        bad = [t for t in prompt_ids if not 0 <= t < self.config.vocab_size]
        if bad:
            raise ValueError(f"prompt: token ids {bad[:5]} are outside the vocabulary of {self.config.vocab_size}")
        bad = [t for t in params.logit_bias if not 0 <= t < self.config.vocab_size]
        if bad:
            raise ValueError(f"logit_bias: token ids {bad[:5]} are outside the vocabulary of {self.config.vocab_size}")

    def stream(self, prompt_ids: list[int], params: SamplingParams, seed_offset: int = 0) -> Iterator[StepDelta]:
        """Generate one completion; yields one delta per generated token."""
        self.check_prompt(prompt_ids, params)
        cfg = self.config
        cache = ContiguousKVCache(cfg.num_layers, cfg.num_kv_heads, cfg.head_dim, self.dtype)
        seq = cache.new_sequence()
        gen = None
        if params.seed is not None:
            gen = torch.Generator().manual_seed(params.seed + seed_offset)
        budget = self.max_model_len - len(prompt_ids)
        max_new = budget if params.max_tokens is None else min(params.max_tokens, budget)
        detok = IncrementalDetokenizer(self.tokenizer, params.stop, params.skip_special_tokens)
        eos = set() if params.ignore_eos else set(self.tokenizer.eos_token_ids)
        stop_ids = set(params.stop_token_ids)
        output: list[int] = []
        feed, pos = prompt_ids, 0
        with torch.inference_mode():
            while True:
                cache.prepare([seq], [len(feed)])
                hidden = self.model(torch.tensor(feed), torch.arange(pos, pos + len(feed)), cache)
                logits = self.model.compute_logits(hidden[-1:])[0]  # (V,)
                pos += len(feed)
                if len(output) < params.min_tokens:  # EOS and stop tokens may not end it yet
                    blocked = list((eos | stop_ids) & set(range(logits.shape[0])))
                    if blocked:
                        logits[blocked] = float("-inf")
                logits = apply_penalties(logits, params, prompt_ids, output)
                token = sample(logits, params, gen)
                output.append(token)
                if token in eos or token in stop_ids:
                    yield StepDelta(detok.flush(), token, "stop", token if token in stop_ids else None)
                    return
                text = detok.push(token)
                if detok.stopped_by is not None and len(output) >= params.min_tokens:
                    yield StepDelta(text, token, "stop", detok.stopped_by)
                    return
                if len(output) >= max_new:
                    yield StepDelta(text + detok.flush(), token, "length", None)
                    return
                yield StepDelta(text, token, None, None)
                feed = [token]

    def generate(self, prompt_ids: list[int], params: SamplingParams, index: int = 0) -> CompletionOutput:
        text, ids = [], []
        finish, reason = None, None
        for d in self.stream(prompt_ids, params, seed_offset=index):
            text.append(d.text)
            ids.append(d.token_id)
            finish, reason = d.finish_reason, d.stop_reason
        return CompletionOutput(
            index=index, text="".join(text), token_ids=ids, finish_reason=finish, stop_reason=reason
        )
