"""Convolution building blocks of the A2U matting net (docs/model.md §3), in plain PyTorch.

The official code uses mapillary's InPlaceABN (BatchNorm + LeakyReLU(0.01) in one module). Here BatchNorm2d and
LeakyReLU are separate modules so that ``torch.nn.SyncBatchNorm.convert_sync_batchnorm`` converts every norm layer
without losing an activation. The activations get non-numeric names (``act``, ``act1``...) so that the numeric
indices of parameterised layers, and therefore every state-dict key, equal the official ones.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["LEAKY_SLOPE", "leaky", "conv_bn_act", "ResidualBlock"]

LEAKY_SLOPE = 0.01


def leaky() -> nn.LeakyReLU:
    """The activation of every ABN layer of the official network."""
    return nn.LeakyReLU(LEAKY_SLOPE)


def conv_bn_act(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> nn.Sequential:
    """conv(k, no bias) → BN+LR, keys ``0.*`` (conv) and ``1.*`` (BN): the official ``conv_bn``/short layers."""
    return nn.Sequential(OrderedDict([
        ("0", nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2, bias=False)),
        ("1", nn.BatchNorm2d(out_channels)),
        ("act", leaky()),
    ]))


class ResidualBlock(nn.Module):
    """Two k×k convs (BN+LR, then BN) plus identity or 1×1-conv+BN projection, then LeakyReLU (stride 1).

    Serves as the encoder BasicBlock (``body_name="convs"``) and the decoder ``residual_conv`` block
    (``body_name="dep_sep_conv"``), the two official names of the same structure.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, body_name: str = "convs") -> None:
        super().__init__()
        pad = kernel_size // 2
        body = nn.Sequential(OrderedDict([
            ("conv1", nn.Conv2d(in_channels, out_channels, kernel_size, 1, padding=pad, bias=False)),
            ("bn1", nn.BatchNorm2d(out_channels)),
            ("act1", leaky()),
            ("conv2", nn.Conv2d(out_channels, out_channels, kernel_size, 1, padding=pad, bias=False)),
            ("bn2", nn.BatchNorm2d(out_channels)),
        ]))
        self.body_name = body_name
        self.add_module(body_name, body)
        self.proj_conv: nn.Module | None = None
        self.proj_bn: nn.Module | None = None
        if in_channels != out_channels:
            self.proj_conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
            self.proj_bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.proj_conv is None else self.proj_bn(self.proj_conv(x))
        return F.leaky_relu(getattr(self, self.body_name)(x) + residual, LEAKY_SLOPE)
