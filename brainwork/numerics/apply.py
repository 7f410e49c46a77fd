"""Switch a float model loaded from a GGUF file to ggml's arithmetic (`numerics="ggml"`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from brainwork.layers.norm import RMSNorm
from brainwork.loader.gguf import GGUFFile
from brainwork.loader.gguf_reader import TensorInfo
from brainwork.numerics import native, ops
from brainwork.numerics.actquant import VEC_DOT_TYPE
from brainwork.numerics.blocks import BLOCK32, BLOCK256, block32, q4_k_blocks, q6_k_blocks
from brainwork.numerics.kquant_linear import GGMLKQuantLinear
from brainwork.numerics.linear import GGMLBlockLinear, GGMLLinear
from brainwork.numerics.rows import chunk_rows, chunks
from brainwork.quant.embedding import GGUFEmbedding

_Q_PRESCALED = ("gemma", "gemma2", "gemma3")  # llama.cpp graphs that apply ggml_scale(Q, f_attention_scale)
_OFFSET_BLOCKS = {"Q4_1": 20, "Q5_1": 24}  # bytes per 32-value block; `m` is the fp16 at bytes 2..4


class GGMLRMSNorm(nn.Module):
    def __init__(self, norm: RMSNorm) -> None:
        super().__init__()
        w = norm.weight.float()
        self.register_buffer("weight", (norm.offset + w) if norm.offset else w)  # as GGUF stores it
        self.eps = norm.eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ops.rms_norm(x.float(), self.weight, self.eps)

    def add(self, x: torch.Tensor, residual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`(x + residual, norm of it)`, as `RMSNorm.add` (ggml adds, then norms)."""
        total = x + residual
        return total, self(total)


class GGMLRotary(nn.Module):
    """RoPE from ggml's angle cache; `freq_scale` 1 / factor for linear scaling. `q_scale`: a
    float32 factor applied to the rotated queries (llama.cpp's Gemma graphs scale Q with
    `ggml_scale` before flash attention, which then runs with kq_scale 1)."""

    def __init__(self, head_dim: int, base: float, freq_scale: float, q_scale: float | None = None) -> None:
        super().__init__()
        self.head_dim, self.base, self.freq_scale, self.q_scale = head_dim, base, freq_scale, q_scale

    def forward(self, positions: torch.Tensor, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cos, sin = ops.rope_cos_sin(positions, self.head_dim, self.base, self.freq_scale)
        q = ops.apply_rope(q, cos, sin)
        if self.q_scale is not None:
            q = q * torch.tensor(self.q_scale, dtype=torch.float32)
        return q, ops.apply_rope(k, cos, sin)

    # the attention layer's entry point (`RotaryEmbedding.rotate_` rotates float32 rows in place);
    # ggml's RoPE returns new tensors, which the caller takes all the same
    rotate_ = forward


def _offsets(f: GGUFFile, t, name: str) -> torch.Tensor:
    raw = f.raw_rows(t)
    blocks = np.ascontiguousarray(raw).reshape(raw.shape[0], -1, _OFFSET_BLOCKS[t.qtype.name])
    m = blocks[..., 2:4].copy().view(np.float16).astype(np.float32)[..., 0]  # (rows, K/32)
    return f.to_hf(name, torch.from_numpy(m))


class LastRowApart(nn.Module):
    """The last block's MLP with every row whose logits are wanted computed on its own.

    llama.cpp drops the rows whose logits nobody asked for right after the last block's attention
    (`ggml_get_rows(cur, inp_out_ids)`), so that block's feed-forward matmuls see one activation
    row per request when only the next token's logits are wanted, and ggml picks its kernels by
    row count (Q4_K repacked: gemm for groups of 4 rows, gemv for the rest; K-quants: a tiled
    kernel from 8 rows). The wanted rows (`rows.chunks`) therefore run as one-row chunks; the
    others, whose outputs nobody reads, run in their chunks."""

    def __init__(self, mlp: nn.Module) -> None:
        super().__init__()
        self.inner = mlp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] <= 1:
            return self.inner(x)
        kept: list[int] = []
        rest: list[int] = []
        rest_chunks: list[int] = []
        start = 0
        for n, wanted in chunks(x.shape[0]):
            body = n - 1 if wanted and n else n
            rest.extend(range(start, start + body))
            if body:
                rest_chunks.append(body)
            if wanted and n:
                kept.append(start + n - 1)
            start += n
        out = torch.empty(x.shape, dtype=torch.float32)  # (N, H): the MLP maps H to H
        if kept:
            with chunk_rows([1] * len(kept), [True] * len(kept)):
                out[kept] = self.inner(x[kept]).float()
        if rest:
            with chunk_rows(rest_chunks, [False] * len(rest_chunks)):
                out[rest] = self.inner(x[rest]).float()
        return out


def _swap(model: nn.Module, name: str, module: nn.Module) -> None:
    owner, _, attr = name.rpartition(".")
    setattr(model.get_submodule(owner) if owner else model, attr, module)


def _block_linear(f: GGUFFile, t: TensorInfo, name: str, bias: torch.Tensor | None) -> nn.Module | None:
    """The ggml-exact module of quantized matrix `t` (HF name `name`, without `.weight`), built
    from its blocks; None for a float matrix."""
    qtype = t.qtype.name
    if qtype in BLOCK32 and native.available():  # the C kernel reads the blocks as stored
        raw = f.to_hf(f"{name}.weight", torch.from_numpy(np.array(f.raw_rows(t))))
        return native.NativeBlockLinear(raw, qtype, int(t.shape[-1]), bias)
    if qtype in BLOCK32:
        codes, d, m = (
            None if a is None else f.to_hf(f"{name}.weight", torch.from_numpy(a)) for a in block32(f.raw_rows(t), qtype)
        )
        return GGMLBlockLinear(codes, d, m, bias, qtype)
    if qtype in BLOCK256:
        parts = (q4_k_blocks if qtype == "Q4_K" else q6_k_blocks)(f.raw_rows(t))
        p = {k: f.to_hf(f"{name}.weight", torch.from_numpy(np.ascontiguousarray(v))) for k, v in parts.items()}
        return GGMLKQuantLinear(qtype, p["codes"], p["scales"], p["d"], bias, p.get("mins"), p.get("dmin"))
    return None


def ggml_weight_stream(model: nn.Module, f: GGUFFile, counts: dict[str, int]) -> Iterator[tuple[str, torch.Tensor]]:
    """`(hf_name, float32 tensor)` for the model's `load_weights`; quantized matrices are swapped
    into `model` as their ggml-exact modules as the stream passes them, built from the file's
    blocks, so no float copy of them is ever made (a tied head from the embedding's blocks).
    A bias that came earlier in the stream moves to the new module; a later one lands on it."""
    linears = {f"{n}.weight" for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    names = {f.hf_name(t.name) for t in f.tensors}
    tie_head = getattr(model.config, "tie_word_embeddings", False) and "lm_head.weight" not in names
    for t in f.tensors:
        name = f.hf_name(t.name)
        targets = [name] if name in linears else []
        embedding = name == "model.embed_tokens.weight" and hasattr(getattr(model, "model", None), "embed_tokens")
        if embedding:  # rows dequantized per lookup by gguf's own formulas, as the float table was
            model.model.embed_tokens = GGUFEmbedding(f.raw_rows(t), t.qtype, int(t.shape[-1]), torch.float32)
            counts["embedding rows"] = counts.get("embedding rows", 0) + 1
        if name == "model.embed_tokens.weight" and tie_head:
            targets.append("lm_head.weight")
        swapped = 0
        for target in targets:
            mod_name = target.removesuffix(".weight")
            bias = getattr(model.get_submodule(mod_name), "bias", None)  # loaded when it came first
            bias = None if bias is None or bias.is_meta else bias.detach()
            module = _block_linear(f, t, mod_name, bias)
            if module is not None:
                _swap(model, mod_name, module)
                counts[t.qtype.name] = counts.get(t.qtype.name, 0) + 1
                swapped += 1
        if embedding or (targets and swapped == len(targets) and name in linears):
            f.release(t)  # done with its pages (embedding rows fault back in when looked up)
            continue
        tensor = f.to_hf(name, f.dequantize(t, torch.float32))
        f.release(t)
        yield name, tensor


def to_ggml_numerics(model: nn.Module, f: GGUFFile, counts: dict[str, int] | None = None) -> dict[str, int]:
    """Replace the linears, norms, RoPE and activations of `model` (weights loaded from `f`; its
    quantized matrices may already be swapped by `ggml_weight_stream`) by their ggml-arithmetic
    forms, and mark the model so that the engine keeps its KV cache in float16 and attends with
    ggml's attention (`model.ggml_attention`: the q.k summation order, or True). Returns counts of
    the weight types swapped (added to `counts`)."""
    cfg = model.config
    linears = {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    counts = {} if counts is None else counts
    names = {f.hf_name(t.name): t for t in f.tensors}
    if "lm_head.weight" not in names:  # tied head: computed against the embedding's blocks
        names["lm_head.weight"] = names["model.embed_tokens.weight"]
    for name, lin in linears.items():
        t = names[f"{name}.weight"]
        qtype = t.qtype.name
        bias = None if lin.bias is None else lin.bias.detach()
        module = _block_linear(f, t, name, bias)
        if module is not None:
            _swap(model, name, module)
            counts[qtype] = counts.get(qtype, 0) + 1
            continue
        offsets = _offsets(f, t, f"{name}.weight") if VEC_DOT_TYPE.get(qtype) == "Q8_1" else None
        _swap(
            model,
            name,
            GGMLLinear(lin.weight.detach(), None if lin.bias is None else lin.bias.detach(), qtype, offsets),
        )
        counts[qtype] = counts.get(qtype, 0) + 1
    layers = getattr(getattr(model, "model", None), "layers", None)
    if (
        layers is not None
        and len(layers)
        and hasattr(layers[-1], "mlp")
        and not isinstance(layers[-1].mlp, LastRowApart)
    ):
        layers[-1].mlp = LastRowApart(layers[-1].mlp)
        # LastRowApart splits the last block's rows by the chunks of the whole batch, so that
        # block must see every row: the unwanted ones are dropped after it, not inside
        model.model.select_late = True
    for name, m in list(model.named_modules()):
        if isinstance(m, RMSNorm):
            _swap(model, name, GGMLRMSNorm(m))
    for m in model.modules():
        if hasattr(m, "rotary") and hasattr(m, "rope_cfg"):
            rope = m.rope_cfg
            scale = 1.0 / rope.factor if rope.type == "linear" else 1.0
            if rope.type not in ("default", "linear"):
                raise ValueError(f"numerics='ggml' does not reproduce {rope.type!r} RoPE scaling")
            if f.architecture in _Q_PRESCALED:
                # Q is scaled before attention: float16(Q * scale) in flash attention (it differs from
                # float16(Q) * scale where Q * scale is float16-subnormal), then kq_scale 1
                m.rotary = GGMLRotary(cfg.head_dim, rope.theta, scale, q_scale=m.cfg.scale)
                m.cfg = dataclasses.replace(m.cfg, attn_scale=1.0)
            else:
                m.rotary = GGMLRotary(cfg.head_dim, rope.theta, scale)
        if hasattr(m, "act"):
            if cfg.hidden_act in ("gelu_pytorch_tanh", "gelu_new", "gelu_fast"):
                m.act = ops.gelu_fp16_table
            elif cfg.hidden_act in ("silu", "swish"):
                m.act = ops.silu
            else:
                raise ValueError(f"numerics='ggml' does not reproduce the {cfg.hidden_act!r} activation")
    native.fuse_projections(model)
    inner = getattr(model, "model", None)
    if layers is not None and hasattr(inner, "stack"):
        from brainwork.numerics.native_stack import NativeStack  # it builds on this module's classes

        inner.stack = NativeStack.of(layers)
    order = ggml_dot_order(f, cfg.head_dim)
    model.ggml_attention = True if order is None else order
    return counts


def ggml_dot_order(f: GGUFFile, head_dim: int) -> torch.Tensor | None:
    """For `llama` files (Q/K rows permuted by the converter, NORM RoPE in llama.cpp) the order
    in which ggml's q.k sums the head dimension, as indices into our rotate-half layout."""
    if f.architecture != "llama":
        return None
    j = torch.arange(head_dim)
    return (j // 2) + (j % 2) * (head_dim // 2)
