"""Every llama block of a ggml-arithmetic model in one C call per step (`ggml_llama_stack`).

Why: at one decoding row a block's arithmetic takes ~0.1 ms in C, while its dozen Python module
calls (norm, fused q/k/v, RoPE twice, cache writes, attention, o, norm, gate/up, SiLU, down) cost
~0.25 ms more; the stack keeps the kernels and drops the calls. It runs the module path's
operations in the module path's order, so results are equal bit for bit; the module path stays
the reference and the fallback (models or weights it does not cover, `BRAINWORK_NATIVE=0`).

Covered: `models.llama.DecoderLayer` blocks (fused or separate q/k/v and gate/up) whose matmuls
are `NativeBlockLinear`s (GGUF Q4_0/Q4_1/Q5_0/Q8_0 blocks read in C) or Q6_K / repacked Q4_K
`GGMLKQuantLinear`s, with SiLU, plain RMSNorm and plain RoPE (no per-head q/k norm, no query
pre-scale). ggml picks K-quant kernels by a chunk's row count (`numerics.rows`), and only the
one-row kernels are in C: a model with K-quant weights runs decode-only steps here, the others
through the modules.
"""

from __future__ import annotations

import ctypes
from typing import Any

import torch

from brainwork.numerics import native, ops
from brainwork.numerics.apply import GGMLRMSNorm, GGMLRotary, LastRowApart
from brainwork.numerics.kquant_linear import GGMLKQuantLinear

_P, _I = ctypes.c_void_p, ctypes.c_int64


class _Mat(ctypes.Structure):
    _fields_ = [
        ("kind", ctypes.c_int32),
        ("n", _I),
        *((f, _P) for f in ("w", "scales", "mins", "d", "dmin", "bias")),
    ]


class _Layer(ctypes.Structure):
    _fields_ = [
        ("qkv", _Mat * 3),
        ("gate_up", _Mat * 2),
        ("o", _Mat),
        ("down", _Mat),
        ("n_qkv", ctypes.c_int32),
        ("n_gate_up", ctypes.c_int32),
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


def _mat(m: Any) -> _Mat | None:
    """The C description of a module path matmul, None when the stack has no kernel for it."""
    if isinstance(m, native.NativeBlockLinear):
        return _Mat(kind=native.QTYPES[m.qtype], n=m.out_features, w=m.raw.data_ptr(), bias=_ptr(m.bias))
    if isinstance(m, GGMLKQuantLinear) and m.c_form is not None:  # one-row kernels only: see `accepts`
        codes, scales, *mins = m.c_form
        return _Mat(
            kind=6 if m.qtype == "Q6_K" else 4,
            n=m.out_features,
            w=codes.data_ptr(),
            scales=scales.data_ptr(),
            mins=mins[0].data_ptr() if mins else None,
            d=m.d.data_ptr(),
            dmin=m.dmin.data_ptr() if mins else None,
            bias=_ptr(m.bias),
        )
    return None


def _mats(mods: list[Any]) -> list[_Mat] | None:
    mats = [_mat(m) for m in mods]
    return None if any(m is None for m in mats) else mats  # type: ignore[return-value]


class NativeStack:
    """The C form of `layers` (a ModuleList of llama blocks); build with `NativeStack.of`."""

    def __init__(self, layers: torch.nn.ModuleList, parts: list[dict[str, Any]], rotary: GGMLRotary) -> None:
        self.layers = layers  # keeps alive the module tensors whose addresses the structs below hold
        self.rotary, self.cfg = rotary, layers[0].self_attn.cfg
        self._parts = parts
        self._structs = (_Layer * len(parts))()
        for s, p in zip(self._structs, parts, strict=True):
            for field, mats in (("qkv", p["qkv"]), ("gate_up", p["gate_up"])):
                for i, m in enumerate(mats):
                    getattr(s, field)[i] = m
                setattr(s, f"n_{field}", len(mats))
            s.o, s.down = p["o"], p["down"]
            s.norm1, s.norm2 = p["norm1"].data_ptr(), p["norm2"].data_ptr()
            s.window = p["window"] or 0
        # K-quant matmuls have C kernels only for rows that are alone (decodes); other steps keep
        # the module path, which picks ggml's multi-row kernels per chunk
        self.one_row_only = any(m.kind >= 4 for p in parts for m in (*p["qkv"], *p["gate_up"], p["o"], p["down"]))
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
            mlp = mlp.inner if isinstance(mlp, LastRowApart) else mlp  # its rows run alone here anyway
            qkv = [attn.qkv_proj] if attn.qkv_proj is not None else [attn.q_proj, attn.k_proj, attn.v_proj]
            gate_up = [mlp.gate_up_proj] if getattr(mlp, "gate_up_proj", None) is not None else None
            if gate_up is None and hasattr(mlp, "gate_proj"):
                gate_up = [mlp.gate_proj, mlp.up_proj]
            p = {
                "qkv": _mats(qkv),
                "gate_up": _mats(gate_up) if gate_up else None,
                "o": _mat(attn.o_proj),
                "down": _mat(getattr(mlp, "down_proj", None)),
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
        """Whether `kv` is a paged float16 cache in ggml mode (the stack's only cache form), and,
        with K-quant weights, the step has only one-row chunks."""
        if not getattr(getattr(kv, "cache", None), "ggml", False) or not hasattr(kv, "ggml_rows"):
            return False
        return not self.one_row_only or all(c.num_tokens == 1 for c in kv.chunks)

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
