"""ASPP context module of the A2U matting net (docs/model.md §3.4), key names as the official ``dconv_pp``."""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn

from model.blocks import conv_bn_act, leaky

__all__ = ["ASPP", "ASPP_DILATIONS"]

# output stride → dilations of the three separable branches (the official table)
ASPP_DILATIONS = {32: (2, 4, 8), 16: (6, 12, 18), 8: (12, 24, 36)}


def _separable_branch(channels: int, out_channels: int, dilation: int) -> nn.Sequential:
    """depthwise 3×3 (dilated) → BN+LR → pointwise 1×1 → BN+LR; parameterised layers at indices 0–3."""
    return nn.Sequential(OrderedDict([
        ("0", nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation, groups=channels, bias=False)),
        ("1", nn.BatchNorm2d(channels)),
        ("act1", leaky()),
        ("2", nn.Conv2d(channels, out_channels, 1, bias=False)),
        ("3", nn.BatchNorm2d(out_channels)),
        ("act3", leaky()),
    ]))


class _Branch(nn.Module):
    """Holder that reproduces the official ``asppN.atrous_conv`` nesting."""

    def __init__(self, atrous_conv: nn.Sequential) -> None:
        super().__init__()
        self.atrous_conv = atrous_conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.atrous_conv(x)


class ASPP(nn.Module):
    """Five parallel 256-channel branches (1×1, three separable dilated 3×3, image pooling) → concat → 1×1 → dropout."""

    def __init__(self, in_channels: int = 256, out_channels: int = 256, output_stride: int = 16,
                 dropout: float = 0.5, branch_channels: int = 256,
                 dilations: tuple[int, int, int] | None = None) -> None:
        """`dilations` overrides the output stride's table (same layers and parameters): training crops of 64-128 px
        give 4-8-px maps here, on which the table's 6/12/18 taps only read padding, so their weights never train."""
        super().__init__()
        if output_stride not in ASPP_DILATIONS:
            raise ValueError(f"ASPP: output_stride must be one of {sorted(ASPP_DILATIONS)}, got {output_stride}")
        if dilations is not None and (len(dilations) != 3 or min(dilations) < 1):
            raise ValueError(f"ASPP: dilations must be three integers >= 1, got {dilations}")
        d1, d2, d3 = ASPP_DILATIONS[output_stride] if dilations is None else (int(d) for d in dilations)
        self.aspp1 = _Branch(conv_bn_act(in_channels, branch_channels, 1))
        self.aspp2 = _Branch(_separable_branch(in_channels, branch_channels, d1))
        self.aspp3 = _Branch(_separable_branch(in_channels, branch_channels, d2))
        self.aspp4 = _Branch(_separable_branch(in_channels, branch_channels, d3))
        self.global_avg_pool = nn.Sequential(OrderedDict([
            ("0", nn.AdaptiveAvgPool2d(1)),
            ("1", nn.Conv2d(in_channels, branch_channels, 1, bias=False)),
            ("2", nn.BatchNorm2d(branch_channels)),
            ("act", leaky()),
        ]))
        self.bottleneck_conv = conv_bn_act(5 * branch_channels, out_channels, 1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.global_avg_pool(x)
        # nearest upsampling of a 1×1 map is a broadcast; expand keeps the shape symbolic for torch.export
        pooled = pooled.expand(-1, -1, x.shape[2], x.shape[3])
        branches = [self.aspp1(x), self.aspp2(x), self.aspp3(x), self.aspp4(x), pooled]
        return self.dropout(self.bottleneck_conv(torch.cat(branches, dim=1)))
