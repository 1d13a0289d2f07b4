"""The A2U kernel generator (docs/model.md §1.2–1.5), batched over the sample axis.

From one feature map X (N×C×H×W, the map an encoder stage is about to downsample) it predicts, per sample,
- ``down``: N×(G·(2s)²)×(H/2)×(W/2) kernels for :func:`model.ops.a2u_downsample` (k = 2s), softmax-normalised;
- ``up``:   N×(G·s²)×H×W kernels for :func:`model.ops.a2u_upsample` (k = s) in the mirrored decoder stage,
  normalised as softmax(sigmoid(·)) over the s² positions (only the sigmoid when s = 1).

Kernel channels are **group-major** (``g·k² + kpos``), the layout the operators read (§1.5 fixes the official
mismatch; with G = 1 both layouts coincide, so released checkpoints are unaffected).

The per-sample filters U, V (k_e×k_e, one per rank, shared over channels or one per channel) and projections P are
predicted by 1×1 heads on pooled features; the per-sample convolutions run as one grouped convolution over N·C
groups (§1.4) instead of the official Python loop over samples. Rank d > 1 is the intended Σ_t P[q,t]·S_t with
independent (u_t, v_t) per rank, not the official (broken) interleaving.

Submodule names follow the official ``InterChannelUpDown`` (``bnu.0``, ``bconv_U.1``, ...), so that released
checkpoints load without a name map and the optimiser grouping by name (``bconv``/``bilinear``) works.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from model.phase_ops import is_channels_last

__all__ = ["A2UKernelGenerator", "generator_parameter_count"]


def generator_parameter_count(channels: int, up_kernel_size: int = 3, groups: int = 1, share: bool = True,
                              rank: int = 1) -> int:
    """Closed-form parameter count of one generator (§1.3: 78·C + 74 shared, 2·C² + 78·C + 72 unshared)."""
    projection = rank * 4 * up_kernel_size ** 2 * groups
    filters = rank * (1 if share else channels)
    return 2 * (channels * projection + projection) + 2 * (channels * filters + filters) + 4 * channels


def _per_sample_depthwise(x: torch.Tensor, weight: torch.Tensor, stride: int, padding: int) -> torch.Tensor:
    """The per-sample depthwise convolution of ``_encode`` with a batch-independent ``groups`` (= C), for export.

    ``x`` N×C×H×W, ``weight`` N×C×d×k×k → N×C×d×h×w. Every sample's filters run on every sample (N× the work of
    this small convolution) and the diagonal n = n' is kept, so ONNX/TorchScript graphs stay dynamic in the batch.
    """
    n, c = x.shape[0], x.shape[1]
    d, k = weight.shape[2], weight.shape[-1]
    out = F.conv2d(x, weight.transpose(0, 1).reshape(c * n * d, 1, k, k), stride=stride, padding=padding, groups=c)
    out = out.reshape(n, c, n, d, out.shape[-2], out.shape[-1])  # [sample, channel, filter sample, rank, y, x]
    idx = torch.arange(n, device=x.device)
    same = (idx[:, None] == idx[None, :]).to(out.dtype).reshape(n, 1, n, 1, 1, 1)
    return (out * same).sum(dim=2)


class _AdaptiveAvgPool2d(nn.AdaptiveAvgPool2d):
    """``nn.AdaptiveAvgPool2d`` that, under torch.export, pools with two averaging matrices built from the input
    size: the same bins (⌊i·H/k⌋ to ⌈(i+1)·H/k⌉), but no index table frozen at the example size (ONNX export)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.compiler.is_exporting():
            return super().forward(x)
        k = self.output_size if isinstance(self.output_size, int) else self.output_size[0]
        return torch.einsum("ih,nchw,jw->ncij", _bin_matrix(x.shape[2], k, x), x, _bin_matrix(x.shape[3], k, x))


def _bin_matrix(size: int, bins: int, like: torch.Tensor) -> torch.Tensor:
    """bins×size matrix whose row i averages positions ⌊i·size/bins⌋ … ⌈(i+1)·size/bins⌉ − 1."""
    pos = torch.arange(size, device=like.device)
    i = torch.arange(bins, device=like.device)
    start = torch.div(i * size, bins, rounding_mode="floor")
    end = torch.div((i + 1) * size + bins - 1, bins, rounding_mode="floor")
    inside = (pos[None, :] >= start[:, None]) & (pos[None, :] < end[:, None])
    return inside.to(like.dtype) / (end - start).to(like.dtype)[:, None]


def _softmax(x: torch.Tensor, dim: int) -> torch.Tensor:
    """``x.softmax(dim)``; exported graphs get it spelled out (max, exp, sum, divide along ``dim``), which
    onnxruntime runs along an inner axis without the two transposes its Softmax node needs there."""
    if torch.compiler.is_exporting():
        e = torch.exp(x - x.amax(dim=dim, keepdim=True))
        return e / e.sum(dim=dim, keepdim=True)
    return x.softmax(dim=dim)


class A2UKernelGenerator(nn.Module):
    """Predicts (down, up) A2U kernels from one feature map; see the module docstring for shapes and layout."""

    def __init__(self, channels: int, up_kernel_size: int = 3, encode_kernel_size: int = 6, groups: int = 1,
                 share: bool = True, rank: int = 1, norm_groups: int = 32) -> None:
        super().__init__()
        for name, value in (("channels", channels), ("up_kernel_size", up_kernel_size),
                            ("encode_kernel_size", encode_kernel_size), ("groups", groups), ("rank", rank),
                            ("norm_groups", norm_groups)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"A2UKernelGenerator: {name} must be a positive int, got {value!r}")
        if channels % norm_groups != 0:
            raise ValueError(f"A2UKernelGenerator: GroupNorm with {norm_groups} groups needs channels divisible by "
                             f"{norm_groups}, got {channels}")
        self.channels = channels
        self.up_kernel_size = up_kernel_size
        self.down_kernel_size = 2 * up_kernel_size
        self.encode_kernel_size = encode_kernel_size
        self.groups = groups
        self.share = share
        self.rank = rank
        self.padding = (encode_kernel_size - 1) // 2
        projection = rank * 4 * up_kernel_size ** 2 * groups
        filters = rank * (1 if share else channels)
        # index 0 is the (parameter-free) pooling, index 1 the head: the official key names
        self.bconv_UP = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, projection, 1))
        self.bconv_DP = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, projection, 1))
        self.bconv_U = nn.Sequential(_AdaptiveAvgPool2d(encode_kernel_size), nn.Conv2d(channels, filters, 1))
        self.bconv_V = nn.Sequential(_AdaptiveAvgPool2d(encode_kernel_size), nn.Conv2d(channels, filters, 1))
        self.bnu = nn.Sequential(nn.GroupNorm(norm_groups, channels), nn.LeakyReLU(0.01))
        self.bnv = nn.Sequential(nn.GroupNorm(norm_groups, channels), nn.LeakyReLU(0.01))

    def _encode(self, x: torch.Tensor, head: nn.Sequential, norm: nn.Sequential) -> torch.Tensor:
        """Per-sample k_e×k_e stride-2 convolution of every channel, as one grouped conv; returns N·d×C×h×w."""
        n, c, height, width = x.shape
        d, ke = self.rank, self.encode_kernel_size
        filters = head(x)  # N×(d or d·C)×ke×ke, rank-major
        if self.share:
            weight = filters.reshape(n, 1, d, ke, ke).expand(n, c, d, ke, ke)
        else:
            weight = filters.reshape(n, d, c, ke, ke).transpose(1, 2)
        if torch.compiler.is_exporting() or torch.jit.is_tracing():
            # exported graphs (pt2, ONNX, TorchScript): `groups` = N·C would freeze or break the dynamic batch
            out = _per_sample_depthwise(x, weight, stride=2, padding=self.padding)
        else:
            weight = weight.reshape(n * c * d, 1, ke, ke)
            if is_channels_last(x):
                # oneDNN otherwise reorders the whole (channels-last) map to NCHW for this convolution
                weight = weight.contiguous(memory_format=torch.channels_last)
            out = F.conv2d(x.reshape(1, n * c, height, width), weight, stride=2, padding=self.padding, groups=n * c)
            out = out.reshape(n, c, d, out.shape[-2], out.shape[-1])
        if d == 1:
            out = out.reshape(n, c, out.shape[-2], out.shape[-1])
        else:
            out = out.transpose(1, 2).reshape(n * d, c, out.shape[-2], out.shape[-1])
        return norm(out)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(down, up)`` kernels (the official return order) for features ``x`` (N×C×H×W, H, W even)."""
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"A2UKernelGenerator: expected N×{self.channels}×H×W features, got {tuple(x.shape)}")
        n, c, height, width = x.shape
        d, s, g = self.rank, self.up_kernel_size, self.groups
        a = self._encode(x, self.bconv_U, self.bnu)
        b = self._encode(x, self.bconv_V, self.bnv)
        h, w = a.shape[-2], a.shape[-1]
        affinity = (a * b).sum(dim=1).reshape(n, d, h, w) / math.sqrt(c)  # S_t, N×d×h×w
        p_up = self.bconv_UP(x).reshape(n, 4 * s * s * g, d)
        p_down = self.bconv_DP(x).reshape(n, 4 * s * s * g, d)
        z_up = torch.einsum("nqt,nthw->nqhw", p_up, affinity)
        z_down = torch.einsum("nqt,nthw->nqhw", p_down, affinity)

        # up: pre-shuffle channel 4·(g·s² + kpos) + 2a + b → pixel (2y+a, 2x+b), channel g·s² + kpos
        up = F.pixel_shuffle(z_up, 2).reshape(n, g, s * s, 2 * h, 2 * w)
        up = torch.sigmoid(up)
        if s > 1:
            up = _softmax(up, 2)
        down = _softmax(z_down.reshape(n, g, 4 * s * s, h, w), 2)
        return down.reshape(n, g * 4 * s * s, h, w), up.reshape(n, g * s * s, 2 * h, 2 * w)
