"""The vocabulary projection (hidden -> logits), the widest matmul of a decoder.

torch's default float32 matmul (MKL) is slow on this one shape, few rows times a very wide
weight: measured on a 2-core Zen 3 (`benchmarks`-style same-run timing), SmolLM2's 576 x 49,152
head took 21.8 ms for 8 rows and 50-58 ms for 64, oneDNN's matmul on the same plain weight
12.8 / 35 ms; Qwen2.5-0.5B's 896 x 151,936 head 126 ms against 48 ms for 8 rows. On the
decoder layers' own shapes the two libraries are within ~15% of each other either way, so only
the head switches. oneDNN reads the weight as stored: no packed copy, no extra memory.
"""

from __future__ import annotations

import torch
from torch import nn

ONEDNN = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def onednn_linear(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, post: str = "none", algorithm: str = ""
) -> torch.Tensor:
    """`x (M, K) @ weight (N, K)^T + bias` through oneDNN's matmul on the plain weight (needs `ONEDNN`);
    `post` an activation oneDNN applies as the result is written ("gelu" with `algorithm` "none"
    for erf or "tanh", "relu"): no second pass over the (M, N) output."""
    return torch.ops.mkldnn._linear_pointwise(x.contiguous(), weight, bias, post, [], algorithm)


def project(head: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """`head(hidden)` for hidden `(M, H)` -> `(M, V)`; through oneDNN for a plain float32
    `nn.Linear` without bias, else the module's own forward (quantized heads keep their kernels)."""
    if (
        ONEDNN
        and type(head) is nn.Linear
        and head.bias is None
        and head.weight.dtype == torch.float32
        and head.weight.is_contiguous()
        and hidden.dtype == torch.float32
        and hidden.dim() == 2
        and hidden.shape[0] > 0
        and not torch.is_grad_enabled()
    ):
        return onednn_linear(hidden, head.weight)
    return head(hidden)
