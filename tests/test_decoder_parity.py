"""Decoder logits equal transformers' on tiny random models of every supported architecture.

Tolerance: 1e-4 absolute on fp32 logits, for a full prompt and for the same prompt fed
incrementally through the KV cache (prefill, then one token at a time).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from brainwork.engine.paged_cache import ChunkMeta, PagedAttention, PagedKVCache
from brainwork.loader.decoder import load_decoder
from brainwork.store import resolve_model
from tests.tiny_models import VOCAB, make_checkpoint

TOL = 1e-4

CASES = {
    "llama": ("llama", {}),
    "llama-bias": ("llama", {"attention_bias": True}),
    "llama-rope-linear": ("llama", {"rope_parameters": {"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0}}),
    "llama-rope-llama3": (
        "llama",
        {
            "rope_parameters": {
                "rope_type": "llama3",
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 64,
                "rope_theta": 500000.0,
            }
        },
    ),
    "llama-rope-yarn": (
        "llama",
        {
            "rope_parameters": {
                "rope_type": "yarn",
                "factor": 4.0,
                "original_max_position_embeddings": 64,
                "rope_theta": 10000.0,
            }
        },
    ),
    "llama-tied": ("llama", {"tie_word_embeddings": True}),
    "qwen2": ("qwen2", {}),
    "mistral-window": ("mistral", {"sliding_window": 5}),
    "gemma3": ("gemma3", {}),
    "gemma3-softcap": ("gemma3", {"final_logit_softcapping": 3.0}),
    "gpt2": ("gpt2", {}),
}


def _paged_cache(cfg, num_blocks: int = 64, block_size: int = 4) -> PagedKVCache:
    return PagedKVCache(cfg.num_layers, num_blocks, block_size, cfg.num_kv_heads, cfg.head_dim, torch.float32)


def _logits_ours(loaded, ids: list[int], chunks: list[int], native: bool = True) -> torch.Tensor:
    """Logits of every position, computed in the given chunks over the engine's paged KV cache.

    The sequence's blocks are taken in reverse order, so that a gather that ignored the block
    table would read the wrong keys.
    """
    cfg = loaded.config
    cache = _paged_cache(cfg, num_blocks=-(-len(ids) // 4) + 2)
    ggml = getattr(loaded.model, "ggml_attention", None)
    if ggml is not None:  # llama.cpp's arithmetic: a float16 cache and its attention, as the engine sets up
        cache = PagedKVCache(cfg.num_layers, cache.num_blocks, 4, cfg.num_kv_heads, cfg.head_dim, torch.float16)
        cache.ggml, cache.ggml_order = True, ggml if isinstance(ggml, torch.Tensor) else None
    if not native:  # decode through the torch path (gather + SDPA) instead of the C kernel
        cache.native = None
    table = list(range(cache.num_blocks - 1, -1, -1))
    out, pos = [], 0
    with torch.inference_mode():
        for n in chunks:
            attn = PagedAttention(cache, [ChunkMeta(pos, n, table)])
            hidden = loaded.model(torch.tensor(ids[pos : pos + n]), torch.arange(pos, pos + n), attn)
            out.append(loaded.model.compute_logits(hidden))
            pos += n
    return torch.cat(out)


@pytest.mark.parametrize("case", sorted(CASES))
def test_logits_match_transformers(case: str, tmp_path: Path) -> None:
    arch, overrides = CASES[case]
    ref = make_checkpoint(tmp_path, arch, **overrides)
    loaded = load_decoder(resolve_model(str(tmp_path)), progress=False)
    ids = torch.randint(0, VOCAB, (20,), generator=torch.Generator().manual_seed(1)).tolist()
    with torch.inference_mode():
        expected = ref(torch.tensor([ids])).logits[0].float()
    full = _logits_ours(loaded, ids, [20])
    steps = [7, 1, 1, 5, 1, 1, 1, 1, 1, 1]
    incremental = _logits_ours(loaded, ids, steps)
    torch_path = _logits_ours(loaded, ids, steps, native=False)
    assert (full - expected).abs().max().item() < TOL
    assert (incremental - expected).abs().max().item() < TOL
    assert (torch_path - expected).abs().max().item() < TOL


def test_batch_of_sequences_matches_alone(tmp_path: Path) -> None:
    """Two sequences in one flat batch give the logits each gives alone."""
    make_checkpoint(tmp_path, "qwen2")
    loaded = load_decoder(resolve_model(str(tmp_path)), progress=False)
    a, b = list(range(3, 14)), list(range(40, 45))
    alone = [_logits_ours(loaded, a, [len(a)]), _logits_ours(loaded, b, [len(b)])]
    cache = _paged_cache(loaded.config)
    with torch.inference_mode():
        # both prompts in one batch (fresh prefill), then one decode step each (gathered history)
        attn = PagedAttention(cache, [ChunkMeta(0, len(a) - 1, [5, 2, 9]), ChunkMeta(0, len(b) - 1, [7, 1])])
        pos = torch.cat([torch.arange(len(a) - 1), torch.arange(len(b) - 1)])
        h1 = loaded.model(torch.tensor(a[:-1] + b[:-1]), pos, attn)
        attn = PagedAttention(cache, [ChunkMeta(len(a) - 1, 1, [5, 2, 9]), ChunkMeta(len(b) - 1, 1, [7, 1])])
        h2 = loaded.model(torch.tensor([a[-1], b[-1]]), torch.tensor([len(a) - 1, len(b) - 1]), attn)
        first, last = loaded.model.compute_logits(h1), loaded.model.compute_logits(h2)
    assert (first[: len(a) - 1] - alone[0][:-1]).abs().max().item() < TOL
    assert (first[len(a) - 1 :] - alone[1][:-1]).abs().max().item() < TOL
    assert (last[0] - alone[0][-1]).abs().max().item() < TOL
    assert (last[1] - alone[1][-1]).abs().max().item() < TOL


@pytest.mark.parametrize("arch", ["llama", "gemma3", "gpt2"])
def test_only_the_kept_rows_leave_the_last_block(tmp_path: Path, arch: str) -> None:
    """`keep` rows come out as they do from the full forward (1e-5: the last block's matmuls see
    fewer rows), that block's MLP runs on those rows alone, and every row's keys and values are
    still cached: the next step attends to them exactly as after a full forward."""
    make_checkpoint(tmp_path, arch)
    loaded = load_decoder(resolve_model(str(tmp_path)), progress=False)
    model = loaded.model
    a, b = list(range(3, 14)), list(range(40, 45))
    ids, pos = torch.tensor(a + b), torch.cat([torch.arange(len(a)), torch.arange(len(b))])
    keep = torch.tensor([len(a) - 1, len(a) + len(b) - 1, 4])  # each prompt's last row, and one scored row
    last = model.transformer["h"][-1].mlp["c_fc"] if arch == "gpt2" else model.model.layers[-1].mlp
    seen: list[int] = []
    hook = last.register_forward_pre_hook(lambda _m, args: seen.append(args[0].shape[0]))
    outs, nexts = [], []
    with torch.inference_mode():
        for rows in (None, keep):
            cache = _paged_cache(loaded.config)
            tables = [[5, 2, 9], [7, 1]]
            attn = PagedAttention(cache, [ChunkMeta(0, len(a), tables[0]), ChunkMeta(0, len(b), tables[1])])
            outs.append(model(ids, pos, attn, rows))
            attn = PagedAttention(cache, [ChunkMeta(len(a), 1, tables[0]), ChunkMeta(len(b), 1, tables[1])])
            nexts.append(model(torch.tensor([20, 21]), torch.tensor([len(a), len(b)]), attn))
    hook.remove()
    assert outs[1].shape == (3, model.config.hidden_size)
    assert (outs[1] - outs[0][keep]).abs().max().item() < 1e-5
    assert (nexts[1] - nexts[0]).abs().max().item() < 1e-5
    if arch != "gpt2":  # GPT-2 takes its rows after the blocks
        assert seen[::2] == [16, 3], seen  # full, then kept (the odd ones: the next steps)
