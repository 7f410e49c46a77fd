"""Every llama block of a ggml-arithmetic model in one C call per step (`ggml_llama_stack`).

Why: at one decoding row a block's arithmetic takes ~0.1 ms in C, while its dozen Python module
calls (norm, fused q/k/v, RoPE twice, cache writes, attention, o, norm, gate/up, SiLU, down) cost
~0.25 ms more; the stack keeps the kernels and drops the calls. It runs the module path's
operations in the module path's order, so results are equal bit for bit; the module path stays
the reference and the fallback (models or weights it does not cover, `BRAINWORK_NATIVE=0`).

Covered: `models.llama.DecoderLayer` blocks whose four matmuls are `NativeBlockLinear`s (GGUF
Q4_0/Q4_1/Q5_0/Q8_0 blocks read in C), with SiLU, plain RMSNorm and plain RoPE (no per-head q/k
norm, no query pre-scale). K-quant weights keep the module path (their kernels depend on the
batch's chunking, `numerics.rows`).
"""

from __future__ import annotations

import ctypes
from typing import Any

import torch

from brainwork.numerics import native, ops
from brainwork.numerics.apply import GGMLRMSNorm, GGMLRotary, LastRowApart

_P, _I = ctypes.c_void_p, ctypes.c_int64


class _Layer(ctypes.Structure):
    _fields_ = [
        *((f, ctypes.c_int32) for f in ("qkv_type", "o_type", "gate_up_type", "down_type")),
        *((f, _P) for f in ("qkv", "o", "gate_up", "down", "qkv_bias", "o_bias", "gate_up_bias", "down_bias")),
        *((f, _P) for f in ("norm1", "norm2", "k_cache", "v_cache")),
        ("window", _I),
    ]


class _Step(ctypes.Structure):
    _fields_ = [
        *((f, _I) for f in ("hidden", "heads", "kv_heads", "head_dim", "inter", "block_size")),
        ("eps", ctypes.c_float),
        ("scale", ctypes.c_float),
        ("order", _P),
        ("rows", _I),
        *((f, _P) for f in ("cos", "sin", "slots", "row_seq", "row_pos", "tables")),
        ("table_width", _I),
    ]


def _lib() -> ctypes.CDLL | None:
    lib = native._lib()
    if lib is not None and lib.ggml_llama_stack.argtypes is None:
        lib.ggml_llama_stack.argtypes = [_P, ctypes.POINTER(_Layer), _I, ctypes.POINTER(_Step)]
        lib.ggml_llama_stack.restype = ctypes.c_int
    return lib


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _native_linear(m: Any) -> native.NativeBlockLinear | None:
    return m if isinstance(m, native.NativeBlockLinear) else None


class NativeStack:
    """The C form of `layers` (a ModuleList of llama blocks); build with `NativeStack.of`."""

    def __init__(self, layers: torch.nn.ModuleList, parts: list[dict[str, Any]], rotary: GGMLRotary) -> None:
        self.layers, self.rotary = layers, rotary
        cfg = layers[0].self_attn.cfg
        self.cfg = cfg
        self._parts = parts  # keeps every tensor a pointer below refers to
        self._structs = (_Layer * len(parts))()
        for s, p in zip(self._structs, parts, strict=True):
            for name in ("qkv", "o", "gate_up", "down"):
                lin: native.NativeBlockLinear = p[name]
                setattr(s, f"{name}_type", native.QTYPES[lin.qtype])
                setattr(s, name, lin.raw.data_ptr())
                setattr(s, f"{name}_bias", _ptr(lin.bias))
            s.norm1, s.norm2 = p["norm1"].data_ptr(), p["norm2"].data_ptr()
            s.window = p["window"] or 0
        self._cache: Any = None

    @classmethod
    def of(cls, layers: torch.nn.ModuleList) -> NativeStack | None:
        """The stack of `layers` when every block is one it covers, else None."""
        from brainwork.models.llama import DecoderLayer

        if _lib() is None or not len(layers):
            return None
        parts: list[dict[str, Any]] = []
        rotary: GGMLRotary | None = None
        for layer in layers:
            if type(layer) is not DecoderLayer:
                return None
            attn, mlp = layer.self_attn, layer.mlp
            mlp = mlp.inner if isinstance(mlp, LastRowApart) else mlp  # block32 rows are independent
            p = {
                "qkv": _native_linear(attn.qkv_proj),
                "o": _native_linear(attn.o_proj),
                "gate_up": _native_linear(getattr(mlp, "gate_up_proj", None)),
                "down": _native_linear(getattr(mlp, "down_proj", None)),
            }
            norms = (layer.input_layernorm, layer.post_attention_layernorm)
            if any(v is None for v in p.values()) or not all(isinstance(n, GGMLRMSNorm) for n in norms):
                return None
            if attn.q_norm is not None or getattr(mlp, "act", None) is not ops.silu:
                return None
            r = attn.rotary
            if not isinstance(r, GGMLRotary) or r.q_scale is not None:
                return None
            if rotary is not None and (r.head_dim, r.base, r.freq_scale) != (
                rotary.head_dim,
                rotary.base,
                rotary.freq_scale,
            ):
                return None
            if len({n.eps for n in norms}) != 1 or (parts and norms[0].eps != parts[0]["eps"]):
                return None
            rotary = r
            p.update(norm1=norms[0].weight, norm2=norms[1].weight, eps=norms[0].eps, window=attn.window)
            parts.append(p)
        assert rotary is not None
        return cls(layers, parts, rotary)

    def accepts(self, kv: Any) -> bool:
        """Whether `kv` is a paged float16 cache in ggml mode (the stack's only cache form)."""
        return bool(getattr(getattr(kv, "cache", None), "ggml", False)) and hasattr(kv, "ggml_rows")

    def __call__(self, h: torch.Tensor, positions: torch.Tensor, kv: Any) -> torch.Tensor:
        """h (N, hidden) float32 -> (N, hidden) after every block; keys/values land in `kv`'s cache."""
        lib = _lib()
        assert lib is not None
        cache = kv.cache
        if cache is not self._cache:  # the engine's cache: its tensors live as long as it does
            for s, k, v in zip(self._structs, cache.k, cache.v, strict=True):
                s.k_cache, s.v_cache = k.data_ptr(), v.data_ptr()
            self._cache = cache
        cfg = self.cfg
        x = h.float().contiguous().clone()  # (N, hidden), updated in place
        cos, sin = ops.rope_cos_sin(positions, self.rotary.head_dim, self.rotary.base, self.rotary.freq_scale)
        cos, sin = cos.contiguous(), sin.contiguous()  # (N, D/2) each
        seq, pos, tables = kv.ggml_rows()
        slots = kv.slot_mapping
        step = _Step(
            hidden=cfg.hidden_size,
            heads=cfg.num_heads,
            kv_heads=cfg.num_kv_heads,
            head_dim=cfg.head_dim,
            inter=cfg.intermediate_size,
            block_size=cache.block_size,
            eps=self._parts[0]["eps"],
            scale=cfg.scale,
            order=_ptr(cache.ggml_order),
            rows=x.shape[0],
            cos=cos.data_ptr(),
            sin=sin.data_ptr(),
            slots=slots.data_ptr(),
            row_seq=seq.data_ptr(),
            row_pos=pos.data_ptr(),
            tables=tables.data_ptr(),
            table_width=tables.shape[1],
        )
        rc = lib.ggml_llama_stack(x.data_ptr(), self._structs, len(self._parts), ctypes.byref(step))
        if rc == -2:
            raise MemoryError(f"ggml_llama_stack: no memory for a batch of {x.shape[0]} rows")
        if rc:
            heads = f"{cfg.num_heads} query / {cfg.num_kv_heads} KV heads, head_dim {cfg.head_dim}"
            raise ValueError(f"ggml_llama_stack: unsupported shape ({heads})")
        return x
