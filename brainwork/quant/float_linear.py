"""`FloatLinear`: a float32 `nn.Linear` on the fastest CPU path for its batch size.

torch's default float32 matmul runs a decode step's few rows on one core, reading the weight at
~10 GB/s. Measured on 30 layers of SmolLM2's shapes (2 threads, AVX-512 EPYC, same run):

| rows | F.linear | oneDNN `_linear_pointwise` | `small_gemm.c` |
|---|---|---|---|
| 1 | 41.4 ms | 23.1-26.2 ms | 18.9-21.4 ms |
| 4 | 50.6 ms | 30.3 ms | 22.5 ms |
| 16 | 71.9 ms | 40.8 ms | 39.3 ms |
| 64 | 139 ms | 102 ms | 111 ms |
| 512 | 661 ms | 554 ms | |

So up to `small_rows` rows run on the C kernel (`engine/native/small_gemm.c`: the weight's rows
split over the threads, each read once for all rows of x, every output one fixed-order dot
product, so a row's result does not depend on its batch company), larger calls on oneDNN, and
F.linear only where neither exists. The class is swapped in place of `nn.Linear`
(`float_linears`), so parameters, and a head tied to the embedding, are not copied.

`pack_float_linears` holds each weight in oneDNN's blocked layout instead
(`mkldnn._reorder_linear_weight`), which its matmul reads without reordering the weight on every
call. Same 30 layers, a fresh weight per layer (so read from memory), packed / plain oneDNN / C
kernel:

| rows | 1 | 2 | 3 | 4 | 16 | 32 | 64 | 128 | 512 |
|---|---|---|---|---|---|---|---|---|---|
| packed | 19.4 | 21.9 | 17.7 | 16.4 | 33.4 | 50.9 | 80.3 | 146 | 508 ms |
| plain | 24.1 | 26.9 | 28.2 | 29.4 | 47.8 | 65.3 | 117 | 177 | 604 ms |
| kernel | 17.6 | 19.5 | 21.1 | 23.7 | 46.1 | 74.3 | | | |

So from `packed_rows` rows up a packed layer runs on oneDNN; one or two rows run on
`blocked_gemm` (`small_gemm.c`), which reads the same blocked buffer as fast as `small_gemm` reads
plain rows (20.1 vs 19.9 ms at 1 row). Where the kernels are built for AVX-512, `decode_gemm`
(same file) takes every packed call up to `decode_rows` rows instead: it prefetches the next
weight part while this one computes, where oneDNN pays the weight's read and its arithmetic one
after the other (same 30 layers, oneDNN -> decode_gemm: 16 rows 29.9 -> 21.7 ms, 64 rows
77.0 -> 70.5, 128 rows 143 -> 137, 256 rows 266 -> 272). No plain copy is kept: packing costs no memory. A weight
shared with an embedding (a tied head) is packed as well, the embedding reading its rows from
the packed buffer (`PackedEmbedding`), unless the table is over a fifth of the weights.
"""

from __future__ import annotations

import ctypes
from functools import cache

import torch
from torch import nn
from torch.nn import functional as F

from brainwork.engine import native
from brainwork.models.vocab import ONEDNN, onednn_linear
from brainwork.quant.heap import release_freed

_P, _I = ctypes.c_void_p, ctypes.c_int64
SIGNATURE = [_P, _P, _P, _P, _I, _I, _I]  # x, w, bias, out, M, K, N


@cache
def _kernel() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    return native.function("small_gemm", "small_gemm", SIGNATURE)


def available() -> bool:
    return _kernel() is not None


def small_gemm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """`x (M, K) @ weight (N, K)^T + bias` float32 through the C kernel -> `(M, N)`."""
    fn = _kernel()
    if fn is None:
        raise RuntimeError("the small-batch GEMM kernel is not built (no C compiler, or BRAINWORK_NATIVE=0)")
    x = x.contiguous()
    out = torch.empty(x.shape[0], weight.shape[0], dtype=torch.float32)  # (M, N)
    b = 0 if bias is None else bias.data_ptr()
    fn(x.data_ptr(), weight.data_ptr(), b, out.data_ptr(), x.shape[0], x.shape[1], weight.shape[0])
    return out


BLOCKED_SIGNATURE = [*SIGNATURE, _I, _I]  # ..., nb, kp: oneDNN's blocked layout (blocked_gemm in small_gemm.c)


@cache
def _blocked_kernel() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    return native.function("small_gemm", "blocked_gemm", BLOCKED_SIGNATURE)


@cache
def _decode_kernel() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    """`decode_gemm` (small_gemm.c) where the library was built with AVX-512, else None."""
    built = native.function("small_gemm", "decode_gemm_built", [])
    return native.function("small_gemm", "decode_gemm", BLOCKED_SIGNATURE) if built is not None and built() else None


def packable() -> bool:
    return ONEDNN and hasattr(torch.ops.mkldnn, "_reorder_linear_weight") and _blocked_kernel() is not None


def packed_view(packed: torch.Tensor) -> torch.Tensor:
    """The raw float32 buffer of an opaque mkldnn tensor, as a flat tensor sharing its memory."""
    nbytes = torch.ops.mkldnn._nbytes(packed)
    raw = (ctypes.c_float * (nbytes // 4)).from_address(torch.ops.mkldnn.data_ptr(packed))
    return torch.frombuffer(raw, dtype=torch.float32)


def blocked_layout(packed: torch.Tensor, weight: torch.Tensor) -> tuple[int, int] | None:
    """`(nb, kp)` when `packed` holds `weight (N, K)` as `(ceil(N / nb), kp, nb)` blocks, K and N
    zero-padded (what oneDNN picks for float32 here), else None. Checked on the first two blocks'
    rows and 64 rows spread over the rest, element for element: a full comparison would need
    temporaries the size of the weight, raising the peak memory of a load."""
    n, k = weight.shape
    flat = packed_view(packed)
    for nb in (64, 32, 48, 16, 24, 8):
        blocks = -(-n // nb)
        rows = torch.cat([torch.arange(min(n, 2 * nb)), torch.arange(0, n, max(1, n // 64)), torch.tensor([n - 1])])
        for kp in (k, -(-k // 16) * 16, -(-k // 8) * 8):
            if blocks * kp * nb == flat.numel():
                got = flat.view(blocks, kp, nb)[rows // nb, :k, rows % nb]  # (rows, K)
                if torch.equal(got, weight[rows]):
                    return nb, kp
    return None


class FloatLinear(nn.Linear):
    small_rows = 16  # up to here the C kernel: measured even with oneDNN at 16-24 rows
    packed_rows = 3  # from here oneDNN on the packed weight, where the layer has one (table above)
    decode_rows = 128  # up to here decode_gemm on the packed weight, where it is built (AVX-512)
    packed: torch.Tensor | None = None  # oneDNN's blocked form of the weight (opaque mkldnn tensor)
    blocks: torch.Tensor | None = None  # or the weight's own storage rearranged into that form (`block_in_place`)
    layout: tuple[int, int] = (0, 0)  # its (nb, kp), for blocked_gemm
    packed_ptr: int = 0  # its buffer's address

    def pack(self) -> bool:
        """Hold the weight in oneDNN's blocked layout only (laid out for a 64-row batch; any row
        count reads it), dropping the plain copy. False, and nothing changed, where the layout is
        not one `blocked_gemm` reads."""
        packed = torch.ops.mkldnn._reorder_linear_weight(self.weight.detach(), 64)
        layout = blocked_layout(packed, self.weight.detach())
        if layout is None:
            return False
        self.packed, self.layout = packed, layout
        self.packed_ptr = torch.ops.mkldnn.data_ptr(packed)  # fixed for its life: not looked up per call
        self.weight = None
        return True

    def block_in_place(self) -> bool:
        """Rearrange the weight's own storage into the blocked layout `(N / 32, K, 32)` that
        `decode_gemm` reads, 32 output rows at a time through a small temporary: no second copy
        of the weight ever exists, so a head tied to a large embedding table can be blocked
        where oneDNN's reorder (which writes a new buffer) would set the load's peak. Only where
        `decode_gemm` is built (AVX-512) and N is a multiple of 32; False, and nothing changed,
        otherwise. Every call then runs on `decode_gemm`, in parts of `decode_rows` rows."""
        w = self.weight
        if _decode_kernel() is None or w is None or self.packed is not None or self.out_features % 32:
            return False
        if not (w.dtype == torch.float32 and w.is_contiguous() and w.device.type == "cpu"):
            return False
        n, k = w.shape
        with torch.no_grad():
            step = 64 * 32  # rows per pass: a (2048, K) temporary, 4.7 MB at K=576
            for r in range(0, n, step):
                part = w[r : r + step]  # (rows, K) -> (rows / 32, K, 32), in the same place
                part.view(-1).copy_(part.view(-1, 32, k).transpose(1, 2).contiguous().view(-1))
        self.blocks, self.layout = w.detach().view(n // 32, k, 32), (32, k)
        self.packed_ptr = w.data_ptr()
        self.weight = None
        return True

    def dense_weight(self) -> torch.Tensor:
        """The `(N, K)` weight: the parameter, or unpacked (a copy) for the rare calls that need it."""
        if self.blocks is not None:
            return self.blocks.transpose(1, 2).reshape(self.out_features, self.in_features)
        return self.weight if self.packed is None else self.packed.to_dense()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // self.in_features if x.dim() else 0
        if rows == 0 or x.dtype != torch.float32 or not x.is_cpu or torch.is_grad_enabled():
            return F.linear(x, self.dense_weight(), self.bias)
        flat = x.reshape(rows, self.in_features)
        if self.blocks is not None:  # every row count on decode_gemm (`block_in_place`)
            fn = _decode_kernel()
            parts = [self._blocked(flat[i : i + self.decode_rows], fn) for i in range(0, rows, self.decode_rows)]
            out = parts[0] if len(parts) == 1 else torch.cat(parts)
        elif self.packed is not None:
            if rows <= self.decode_rows and self.layout[0] % 32 == 0 and (fn := _decode_kernel()) is not None:
                out = self._blocked(flat, fn)
            elif rows >= self.packed_rows:
                out = onednn_linear(flat, self.packed, self.bias)
            else:
                out = self._blocked(flat, _blocked_kernel())
        elif rows <= self.small_rows and available():
            out = small_gemm(flat, self.weight, self.bias)
        elif ONEDNN:
            out = onednn_linear(flat, self.weight, self.bias)
        else:
            return F.linear(x, self.weight, self.bias)
        return out.view(*x.shape[:-1], self.out_features)

    def _blocked(self, x: torch.Tensor, fn: ctypes._CFuncPtr) -> torch.Tensor:  # type: ignore[name-defined]
        """`fn` (blocked_gemm or decode_gemm) on the packed buffer -> `(M, N)`."""
        x = x.contiguous()
        out = torch.empty(x.shape[0], self.out_features, dtype=torch.float32)  # (M, N)
        b = 0 if self.bias is None else self.bias.data_ptr()
        args = (x.shape[0], self.in_features, self.out_features, *self.layout)
        if fn(x.data_ptr(), self.packed_ptr, b, out.data_ptr(), *args) != 0:
            raise RuntimeError(f"the blocked kernel cannot split a block of {self.layout[0]} columns")
        return out


def float_linears(model: nn.Module) -> int:
    """Swap every contiguous float32 `nn.Linear` of `model` for `FloatLinear`, in place; returns how many."""
    swapped = 0
    for m in model.modules():
        w, b = getattr(m, "weight", None), getattr(m, "bias", None)
        plain = type(m) is nn.Linear and w is not None and w.dtype == torch.float32 and w.is_contiguous()
        if plain and (b is None or (b.dtype == torch.float32 and b.is_contiguous())):
            m.__class__ = FloatLinear
            swapped += 1
    return swapped


TIED_SHARE = 0.2  # the largest tied table, as a share of all weights, that is packed with its head


class PackedEmbedding(nn.Embedding):
    """An embedding table tied to a packed head: rows are read from the head's blocked buffer
    `(ceil(V / nb), kp, nb)` (oneDNN's, or the table's own storage blocked in place), so the
    table is held once. A row is `nb`-strided there, which costs
    ~2 ms per 512 ids of Qwen2.5's 896-wide table against 0.2 ms plain: nothing beside the head's
    15-30% at 4-64 rows (its widest matmul)."""

    blocks: torch.Tensor  # the head's packed buffer viewed (ceil(V / nb), kp, nb)
    head_packed: torch.Tensor  # the tensor that owns that buffer (oneDNN's opaque one, or the blocks)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        flat = ids.reshape(-1)
        nb = self.blocks.shape[2]
        rows = self.blocks[flat // nb, : self.embedding_dim, flat % nb]  # (n, H)
        return rows.view(*ids.shape, self.embedding_dim)


def pack_float_linears(model: nn.Module) -> int:
    """Hold the weight of every `FloatLinear` of `model` in oneDNN's blocked layout
    (`FloatLinear.pack`); returns how many. A weight shared with an `nn.Embedding` (a tied head)
    is packed too, the embedding then reading the packed buffer (`PackedEmbedding`), unless the
    table exceeds `TIED_SHARE` of the weights; one shared any other way stays plain. Without
    oneDNN's reorder op, none."""
    if not packable():
        return 0
    users: dict[int, list[nn.Module]] = {}
    for m in model.modules():
        for p in m.parameters(recurse=False):
            users.setdefault(id(p), []).append(m)
    total = sum(p.numel() for p in model.parameters())
    packed = 0
    for m in list(model.modules()):
        if type(m) is not FloatLinear or m.packed is not None:
            continue
        others = [u for u in users[id(m.weight)] if u is not m]
        tied = len(others) == 1 and type(others[0]) is nn.Embedding and others[0].weight is m.weight
        if others and not (tied and others[0].max_norm is None):
            continue
        if tied:
            # oneDNN's reorder holds a tied table twice for a moment, which can set the load's
            # peak: Gemma 3 270M's is 63% of the weights (1.26x -> 1.78x), SmolLM2's 21% (~1.19x
            # -> ~1.40x, over the 1.35x test_loading_makes_no_second_copy allows). Blocking in
            # place holds it once; else only tables under a fifth are packed
            if not (m.block_in_place() or (m.weight.numel() <= TIED_SHARE * total and m.pack())):
                continue
            emb = others[0]
            emb.__class__ = PackedEmbedding
            emb.head_packed = m.blocks if m.blocks is not None else m.packed
            emb.blocks = m.blocks if m.blocks is not None else packed_view(m.packed).view(-1, *m.layout[::-1])
            emb.weight = None
            packed += 1
        elif m.pack():
            packed += 1
        release_freed()  # each plain weight just freed: else the heap keeps them and a load's peak grows ~15%
    return packed
