"""EfficientNet-Lite for inference, with each batch norm folded into the convolution before it.

Lite differs from EfficientNet: ReLU6 instead of swish, no squeeze-and-excitation, and the stem
and head are not scaled. The weights are the state dict that `efficientnet-lite-pytorch` (a
port of TensorFlow's checkpoints) loads; its key names are read here, and the tests check that
this network ranks classes as that reference code does. Padding is TensorFlow's "SAME": for a
stride-2 layer on an even size the extra row and column go at the bottom and right.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

BN_EPS = 1e-3  # TensorFlow's batch-norm epsilon, kept by the PyTorch port


@dataclass(frozen=True)
class StageArgs:
    repeats: int
    kernel: int
    stride: int
    expand: int
    c_in: int
    c_out: int


# efficientnet_lite_builder.py's block strings for lite0 (width and depth multipliers 1.0)
LITE0_STAGES = (
    StageArgs(1, 3, 1, 1, 32, 16),
    StageArgs(2, 3, 2, 6, 16, 24),
    StageArgs(2, 5, 2, 6, 24, 40),
    StageArgs(3, 3, 2, 6, 40, 80),
    StageArgs(3, 5, 1, 6, 80, 112),
    StageArgs(4, 5, 2, 6, 112, 192),
    StageArgs(1, 3, 1, 6, 192, 320),
)
IMAGE_SIZE = 224
HEAD_CHANNELS = 1280


class FoldedConv(nn.Module):
    """Conv2d (no bias) followed by BatchNorm, as one Conv2d with a bias; TF 'SAME' padding."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1, relu6: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride, groups=groups, bias=True)
        self.kernel, self.stride, self.relu6 = kernel, stride, relu6

    def load(self, conv_w: torch.Tensor, bn: dict[str, torch.Tensor]) -> None:
        scale = bn["weight"] / torch.sqrt(bn["running_var"] + BN_EPS)  # (c_out,)
        self.conv.weight.data = (conv_w * scale[:, None, None, None]).contiguous()
        self.conv.bias.data = bn["bias"] - bn["running_mean"] * scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, c_in, H, W) -> (N, c_out, H/s, W/s)
        h, w = x.shape[-2:]
        pad_h = max((math.ceil(h / self.stride) - 1) * self.stride + self.kernel - h, 0)
        pad_w = max((math.ceil(w / self.stride) - 1) * self.stride + self.kernel - w, 0)
        if pad_h or pad_w:
            x = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
        x = self.conv(x)
        return F.relu6(x) if self.relu6 else x


class MBConv(nn.Module):
    """Inverted bottleneck: 1x1 expand, kxk depthwise, 1x1 project; residual when shapes match."""

    def __init__(self, a: StageArgs) -> None:
        super().__init__()
        mid = a.c_in * a.expand
        self.expand = FoldedConv(a.c_in, mid, 1) if a.expand != 1 else None
        self.depthwise = FoldedConv(mid, mid, a.kernel, a.stride, groups=mid)
        self.project = FoldedConv(mid, a.c_out, 1, relu6=False)
        self.residual = a.stride == 1 and a.c_in == a.c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(x) if self.expand is not None else x
        y = self.project(self.depthwise(y))
        return y + x if self.residual else y


class EfficientNetLite(nn.Module):
    def __init__(self, stages: tuple[StageArgs, ...] = LITE0_STAGES, num_classes: int = 1000) -> None:
        super().__init__()
        self.stem = FoldedConv(3, stages[0].c_in, 3, 2)
        blocks = []
        for a in stages:
            blocks.append(MBConv(a))
            for _ in range(a.repeats - 1):  # later repeats keep the size: stride 1, c_out -> c_out
                blocks.append(MBConv(StageArgs(1, a.kernel, 1, a.expand, a.c_out, a.c_out)))
        self.blocks = nn.Sequential(*blocks)
        self.head = FoldedConv(stages[-1].c_out, HEAD_CHANNELS, 1)
        self.fc = nn.Linear(HEAD_CHANNELS, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, 3, 224, 224) -> logits (N, classes)
        x = self.head(self.blocks(self.stem(x)))
        return self.fc(x.mean(dim=(2, 3)))

    def load_reference_state(self, sd: dict[str, torch.Tensor]) -> None:
        """Load `efficientnet-lite-pytorch`'s state dict (keys `_conv_stem`, `_blocks.N._bn1`, ...)."""

        def bn(prefix: str) -> dict[str, torch.Tensor]:
            return {k: sd[f"{prefix}.{k}"].float() for k in ("weight", "bias", "running_mean", "running_var")}

        self.stem.load(sd["_conv_stem.weight"].float(), bn("_bn0"))
        for i, block in enumerate(self.blocks):
            p = f"_blocks.{i}"
            if block.expand is not None:
                block.expand.load(sd[f"{p}._expand_conv.weight"].float(), bn(f"{p}._bn0"))
            block.depthwise.load(sd[f"{p}._depthwise_conv.weight"].float(), bn(f"{p}._bn1"))
            block.project.load(sd[f"{p}._project_conv.weight"].float(), bn(f"{p}._bn2"))
        self.head.load(sd["_conv_head.weight"].float(), bn("_bn1"))
        self.fc.weight.data = sd["_fc.weight"].float()
        self.fc.bias.data = sd["_fc.bias"].float()
