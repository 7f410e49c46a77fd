"""ggml's CPU flash attention (`flash_attn_ext_f16_one_chunk`), step for step, in torch.

For float16 K/V caches ggml: converts the query to float16; computes each q.k with
`ggml_vec_dot_f16` (products exact in float32, summed in 4 x 8 float32 lanes, then a fixed tree);
walks the keys in order keeping a running max M and sum S (`expf` in float32, `S*ms + vs` rounded
twice); and accumulates
the values in a float16 vector: `VKQ = f16(VKQ * ms)` on a new max, then `VKQ = f16(fma(v, vs, VKQ))`.
The rounding of that float16 accumulator after every key is what separates its output from an
exact softmax, so it is reproduced here exactly; the loop runs over keys, vectorized over queries
and heads.

llama.cpp takes this path for micro-batches under 64 rows and for decodes whose padded KV length
stays under 512 (longer ones split the keys across threads): the cases the greedy parity checks.
"""

from __future__ import annotations

import torch

from brainwork.numerics import ops


def _exp(x: torch.Tensor) -> torch.Tensor:
    return ops.expf(x)


def f16_dot(q16: torch.Tensor, k16: torch.Tensor, order: torch.Tensor | None) -> torch.Tensor:
    """ggml_vec_dot_f16 (AVX2) of every query with every key of the same batch entry.

    q16 `(B, T, Hq, D)`, k16 `(B, L, Hq, D)` (keys already repeated per query head), float32
    tensors holding float16 values; `order` permutes D into ggml's element order. Returns
    `(B, T, Hq, L)`."""
    if order is not None:
        q16, k16 = q16[..., order], k16[..., order]
    b, t, h, d = q16.shape
    # (B, Hq, T, 1, D) * (B, Hq, 1, L, D): products of two float16 values are exact in float32
    prod = q16.permute(0, 2, 1, 3)[:, :, :, None, :] * k16.permute(0, 2, 1, 3)[:, :, None, :, :]
    lanes = prod.view(b, h, t, -1, d // 32, 4, 8)  # 32-element steps, 4 accumulators of 8 lanes
    acc = lanes[..., 0, :, :]
    for c in range(1, d // 32):
        acc = acc + lanes[..., c, :, :]  # fma with an exact product == float32 add
    x = (acc[..., 0, :] + acc[..., 2, :]) + (acc[..., 1, :] + acc[..., 3, :])  # (..., 8)
    t0 = x[..., :4] + x[..., 4:]
    r = (t0[..., 0] + t0[..., 1]) + (t0[..., 2] + t0[..., 3])  # (B, Hq, T, L)
    return r.permute(0, 2, 1, 3)


def ggml_attention(
    q: torch.Tensor,  # (T, Hq, D) or (B, T, Hq, D) float32
    q_pos: torch.Tensor,  # (T,) or (B, T) positions of the queries
    k16: torch.Tensor,  # (L, Hkv, D) or (B, L, Hkv, D) float16: keys of positions 0..L-1
    v16: torch.Tensor,  # same shape as k16
    scale: float,
    window: int | None = None,
    order: torch.Tensor | None = None,
) -> torch.Tensor:  # (T, Hq, D) or (B, T, Hq, D) float32
    """Batch entries may hold sequences of different lengths: keys past a query's position are
    masked (skipped, as ggml skips -inf mask entries), so padding keys never count."""
    single = q.dim() == 3
    if single:
        q, q_pos, k16, v16 = q[None], q_pos[None], k16[None], v16[None]
    b, t, hq, d = q.shape
    length, hkv = k16.shape[1], k16.shape[2]
    group = hq // hkv
    k = k16.float().repeat_interleave(group, dim=2)  # (B, L, Hq, D)
    v = v16.double().repeat_interleave(group, dim=2)  # exact values, for the fma below
    s = f16_dot(q.half().float(), k, order) * torch.tensor(scale, dtype=torch.float32)  # (B, T, Hq, L)
    k_pos = torch.arange(length)
    ok = k_pos[None, None, :] <= q_pos[:, :, None]  # (B, T, L)
    if window is not None:
        ok &= q_pos[:, :, None] - k_pos[None, None, :] < window
    m = torch.full((b, t, hq), float("-inf"))
    ssum = torch.zeros(b, t, hq)
    acc = torch.zeros(b, t, hq, d, dtype=torch.float16)
    one = torch.ones(b, t, hq)
    for j in range(length):
        valid = ok[:, :, j][..., None].expand(b, t, hq)  # (B, T, Hq)
        if not bool(valid.any()):
            continue
        sj = s[..., j]
        new_max = valid & (sj > m)
        e = _exp(torch.where(new_max, m - sj, sj - m))  # one expf per entry: ms on a new max, else vs
        ms = torch.where(new_max, e, one)
        vs = torch.where(new_max | ~valid, one, e)
        scaled = (acc.float() * ms[..., None]).half()  # ggml_vec_scale_f16
        acc = torch.where(new_max[..., None], scaled, acc)
        mad = (acc.double() + v[:, j][:, None] * vs.double()[..., None]).float().half()  # fma, then f16
        acc = torch.where(valid[..., None], mad, acc)
        new_sum = ssum * ms + vs  # two float32 roundings: ggml's `S = S*ms + vs` is not contracted
        ssum = torch.where(valid, new_sum, ssum)
        m = torch.where(new_max, sj, m)
    inv = torch.where(ssum == 0, torch.zeros_like(ssum), (1.0 / ssum.double()).float())
    out = acc.float() * inv[..., None]
    return out[0] if single else out
