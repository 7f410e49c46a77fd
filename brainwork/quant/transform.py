"""Weight transforms applied to a built model: swap `nn.Linear` (and GGUF embeddings) for packed forms.

Two entry points: `gguf_weight_stream` feeds the model's `load_weights` with the float tensors of
a GGUF file while it swaps quantized matrices in straight from their blocks (never through a
whole float copy), and `quantize_linears` requantizes a float model (safetensors, or a GGUF
loaded as float) after loading.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch
from gguf import quants
from torch import nn

from brainwork.loader.gguf import SUPPORTED_TYPES, GGUFFile
from brainwork.loader.gguf_reader import TensorInfo
from brainwork.quant.embedding import GGUFEmbedding
from brainwork.quant.gguf_blocks import int4_groups
from brainwork.quant.heap import release_freed
from brainwork.quant.linear import QuantLinear
from brainwork.quant.modes import plan
from brainwork.quant.packing import int4_from_float, int8_from_float

_CHUNK_ROWS = 4096  # rows converted at a time: transients stay a few MB next to 152k-row matrices


def _swap(model: nn.Module, name: str, module: nn.Module) -> None:
    owner, _, attr = name.rpartition(".")
    setattr(model.get_submodule(owner), attr, module)


def _row_chunks(
    f: GGUFFile, t: TensorInfo, convert: Callable[[np.ndarray], tuple[torch.Tensor, ...]]
) -> tuple[torch.Tensor, ...]:
    """Apply `convert` to `(rows, bytes)` slices of `t`'s raw rows and join the per-row results."""
    raw = f.raw_rows(t)
    parts = [convert(raw[i : i + _CHUNK_ROWS]) for i in range(0, raw.shape[0], _CHUNK_ROWS)]
    return tuple(torch.cat(p) for p in zip(*parts, strict=True))


def _dequantized(raw: np.ndarray, t: TensorInfo) -> torch.Tensor:
    if t.qtype.name == "F32":
        values = raw.view(np.float32)
    elif t.qtype.name == "F16":
        values = raw.view(np.float16)
    else:
        values = quants.dequantize(raw, t.qtype)
    return torch.from_numpy(np.array(values, dtype=np.float32)).view(raw.shape[0], -1)


def _gguf_linear(f: GGUFFile, t: TensorInfo, name: str, kind: str, bias: torch.Tensor | None) -> QuantLinear:
    """One GGUF matrix -> QuantLinear, converted in row slices, rows then put in HF order."""
    if kind == "int4-exact":
        parts = _row_chunks(f, t, lambda r: tuple(map(torch.from_numpy, int4_groups(r, t.qtype.name))))
        codes, scale, zero = (f.to_hf(name, p) for p in parts)
        return QuantLinear.int4(codes, scale, zero, bias)
    if kind == "int4":
        codes, scale, zero = (
            f.to_hf(name, p) for p in _row_chunks(f, t, lambda r: int4_from_float(_dequantized(r, t)))
        )
        return QuantLinear.int4(codes, scale, zero, bias)
    q, scales = (f.to_hf(name, p) for p in _row_chunks(f, t, lambda r: int8_from_float(_dequantized(r, t))))
    return QuantLinear.int8(q, scales, bias)


def gguf_weight_stream(
    model: nn.Module, f: GGUFFile, mode: str, dtype: torch.dtype, counts: dict[str, int]
) -> Iterator[tuple[str, torch.Tensor]]:
    """`(hf_name, float tensor)` for the model's `load_weights`; matrices that `mode` keeps packed
    are swapped into `model` instead (the embedding as `GGUFEmbedding`, a tied output head as its
    own packed copy of the embedding's blocks). `counts` tallies how each matrix was kept."""
    linears = {f"{n}.weight": m for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    names = {f.hf_name(t.name) for t in f.tensors}
    tie_head = getattr(model.config, "tie_word_embeddings", False) and "lm_head.weight" not in names
    for t in f.tensors:
        name = f.hf_name(t.name)
        if t.qtype.name not in SUPPORTED_TYPES:
            f.dequantize(t, dtype)  # raises ModelFormatError naming the file, tensor and type
        targets = []
        if name == "model.embed_tokens.weight":
            model.model.embed_tokens = GGUFEmbedding(f.raw_rows(t), t.qtype, t.shape[-1], dtype)
            counts["embedding rows"] = counts.get("embedding rows", 0) + 1
            if tie_head:
                targets.append("lm_head.weight")
        elif name in linears:
            targets.append(name)
        else:
            tensor = f.to_hf(name, f.dequantize(t, dtype))
            f.release(t)
            yield name, tensor
            continue
        for target in targets:
            linear = linears[target]
            n, k = t.shape
            kind = plan(mode, t.qtype.name, QuantLinear.supports_int4(n, k))
            counts[kind] = counts.get(kind, 0) + 1
            if kind == "float":
                tensor = f.to_hf(target, f.dequantize(t, dtype))
                if target == name:
                    yield name, tensor
                else:  # a tied head kept in float: its own parameter, the embedding reads the file
                    linear.weight = nn.Parameter(tensor, requires_grad=False)
                continue
            _swap(model, target.removesuffix(".weight"), _gguf_linear(f, t, target, kind, linear.bias))
        f.release(t)  # converted: its file pages need not stay resident (embedding rows fault back in)


def quantize_linears(model: nn.Module, mode: str) -> dict[str, int]:
    """Replace every float `nn.Linear` of a loaded model by its `mode` ("int8"/"int4") QuantLinear."""
    counts: dict[str, int] = {}
    for name, m in list(model.named_modules()):
        if not isinstance(m, nn.Linear):
            continue
        n, k = m.weight.shape
        kind = plan(mode, "F32", QuantLinear.supports_int4(n, k))
        counts[kind] = counts.get(kind, 0) + 1
        if kind == "int4":
            q = QuantLinear.int4(*int4_from_float(m.weight.detach()), bias=m.bias)
        elif kind == "int8":
            q = QuantLinear.int8(*int8_from_float(m.weight.detach()), bias=m.bias)
        else:
            continue
        _swap(model, name, q)
    return counts


def _concat_float(parts: list[nn.Module]) -> nn.Linear | None:
    """One float `nn.Linear` with the parts' rows stacked, or None if they are not plain float
    linears of one dtype and input width (each output is the same dot product as before)."""
    if not all(type(p) is nn.Linear for p in parts):
        return None
    first: nn.Linear = parts[0]  # type: ignore[assignment]
    linears: list[nn.Linear] = parts  # type: ignore[assignment]
    if any(p.weight.dtype != first.weight.dtype or p.in_features != first.in_features for p in linears):
        return None
    if any((p.bias is None) != (first.bias is None) for p in linears):
        return None
    weight = torch.cat([p.weight.detach() for p in linears])  # (sum N, K)
    with torch.device("meta"):  # no throwaway init of the fused weight
        fused = nn.Linear(first.in_features, weight.shape[0], bias=first.bias is not None)
    fused.weight = nn.Parameter(weight, requires_grad=False)
    if first.bias is not None:
        fused.bias = nn.Parameter(torch.cat([p.bias.detach() for p in linears]), requires_grad=False)  # type: ignore[union-attr]
    return fused


def _concat(parts: list[nn.Module]) -> nn.Module | None:
    """One module computing `parts` side by side (outputs concatenated), or None if they are
    neither float linears of one dtype (`_concat_float`) nor QuantLinears of one form. Packed
    int4 rows come in whole tiles (`int4_tile`), so the packed tensors concatenate as they are."""
    if not all(isinstance(p, QuantLinear) for p in parts):
        return _concat_float(parts)
    kind = parts[0].kind
    if any(p.kind != kind or p.in_features != parts[0].in_features for p in parts):
        return None
    biases = [p.bias for p in parts]
    if any(b is None for b in biases) and not all(b is None for b in biases):
        return None
    bias = None if biases[0] is None else torch.cat([b.data for b in biases])  # type: ignore[union-attr]
    n, k = sum(p.out_features for p in parts), parts[0].in_features
    fused = QuantLinear(k, n, kind, bias)
    if kind == "int4":
        fused.register_buffer("packed", torch.cat([p.packed for p in parts]))
        fused.register_buffer("scales_zeros", torch.cat([p.scales_zeros for p in parts], dim=1))
    else:
        fused.register_buffer("weight_int8", torch.cat([p.weight_int8 for p in parts]))
        fused.register_buffer("scales", torch.cat([p.scales for p in parts]))
    return fused


def fuse_projections(model: nn.Module, concat: Callable[[list[nn.Module]], nn.Module | None] = _concat) -> int:
    """Fuse q/k/v and gate/up projections into one kernel call each (`qkv_proj`, `gate_up_proj`):
    at decode a call costs ~100 us on two cores, mostly fixed overhead, so 7 calls per layer
    become 4. `concat` builds the fused module from the parts, or None where they cannot fuse
    (default: QuantLinears of one form). Returns how many groups were fused."""
    fused_count = 0
    for module in model.modules():
        for names, attr in ((("q_proj", "k_proj", "v_proj"), "qkv_proj"), (("gate_proj", "up_proj"), "gate_up_proj")):
            parts = [getattr(module, n, None) for n in names]
            fused = None if any(p is None for p in parts) else concat(parts)  # type: ignore[arg-type]
            if fused is None:
                continue
            setattr(module, attr, fused)
            for n in names:  # the parts' memory goes; the fused copy holds the same bytes
                setattr(module, n, None)
            release_freed()  # else the heap may keep the parts: SmolLM2's load peak 1.25x -> 1.63x
            fused_count += 1
    return fused_count
