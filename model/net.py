"""The A2U matting network (docs/model.md §3): de-strided ResNet-34 encoder with A2U downsampling, ASPP, and a
residual decoder that upsamples with the A2U kernels of the mirrored encoder stage.

Default options = the released configuration (``adobe.yaml``): 8,089,235 trainable parameters (share=False:
8,269,451; ``upsampler="bilinear"``/``"nearest"``: 8,049,003). Module names equal the official ones
(``layer0``, ``bilinear0``, ``layer2_1.bilinear``, ``dconv_pp``, ``decoder_layer4.dconv``, ``short3``, ``pred``...),
so official checkpoints load by name (:mod:`model.checkpoints`) and the optimiser split of §4.4
(:func:`parameter_groups`) works by name.

Baselines (``upsampler="bilinear"|"nearest"``) have no generators. What replaces the four A2U downsamplings is not in
the spec; here they are the ResNet operations A2U replaced: 3×3/2 max-pooling for the two stem downsamplings and a
stride-2 first conv in ``layer2_1``/``layer3_1`` (no extra parameters, so the count is the quoted 8.05 M).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F

from model import cpu_inference
from model.aspp import ASPP
from model.blocks import LEAKY_SLOPE, ResidualBlock, conv_bn_act, leaky
from model.kernel_generator import A2UKernelGenerator
from model.ops import a2u_downsample, a2u_upsample

__all__ = ["A2UMatting", "UPSAMPLERS", "parameter_groups", "convert_sync_batchnorm", "count_parameters",
           "HIGH_LR_NAME_KEYS"]

UPSAMPLERS = ("a2u", "bilinear", "nearest")
OUTPUT_STRIDE = 16
# §4.4: parameters whose name contains one of these get the full learning rate (decoder, ASPP, head, skips, generators)
HIGH_LR_NAME_KEYS = ("dconv", "pred", "short", "bconv", "bilinear")


class A2UResidualBlock(nn.Module):
    """Encoder block that halves the resolution (``layer2_1``/``layer3_1``, §3.3).

    A2U: conv3×3 (stride 1) → BN+LR = F; generator(F) → (down, up); A2U-downsample F; conv3×3 → BN;
    + 1×1-stride-2 projection → BN; LeakyReLU. Returns the output and the up kernels for the decoder.
    Baselines: the first conv has stride 2 and no kernels are produced.
    """

    def __init__(self, in_channels: int, out_channels: int, generator: A2UKernelGenerator | None) -> None:
        super().__init__()
        stride = 1 if generator is not None else 2
        self.layer1 = nn.Sequential(OrderedDict([
            ("conv1", nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)),
            ("bn1", nn.BatchNorm2d(out_channels)),
            ("act1", leaky()),
        ]))
        self.layer2 = nn.Sequential(OrderedDict([
            ("conv2", nn.Conv2d(out_channels, out_channels, 3, 1, padding=1, bias=False)),
            ("bn2", nn.BatchNorm2d(out_channels)),
        ]))
        self.bilinear = generator
        self.proj_conv = nn.Conv2d(in_channels, out_channels, 1, stride=2, bias=False)
        self.proj_bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        residual = self.proj_bn(self.proj_conv(x))
        features = self.layer1(x)
        up_kernels = None
        if self.bilinear is not None:
            down_kernels, up_kernels = self.bilinear(features)
            features = a2u_downsample(features, down_kernels, self.bilinear.down_kernel_size, self.bilinear.groups)
        out = F.leaky_relu(self.layer2(features) + residual, LEAKY_SLOPE)
        return out, up_kernels


class DecoderBlock(nn.Module):
    """Upsample ×2 (A2U with the mirrored kernels, or bilinear/nearest) + skip, then two residual_conv blocks."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.dconv = ResidualBlock(in_channels, out_channels, kernel_size, body_name="dep_sep_conv")
        self.dconv1 = ResidualBlock(out_channels, out_channels, kernel_size, body_name="dep_sep_conv")

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.dconv1(self.dconv(x + skip))


def _basic_blocks(channels: int, count: int) -> nn.Sequential:
    return nn.Sequential(OrderedDict(
        (f"block{i + 1}", ResidualBlock(channels, channels, 3, body_name="convs")) for i in range(count)))


class A2UMatting(nn.Module):
    """A2U matting net: N×4×H×W (ImageNet-normalised RGB + trimap/255), H, W multiples of 16 → raw N×1×H×W alpha.

    Options: ``upsampler`` ("a2u" | "bilinear" | "nearest"), ``share`` (shared or channel-wise U/V filters),
    ``up_kernel_size`` s (down kernels are 2s), ``encode_kernel_size`` k_e, ``groups`` G, ``rank`` d,
    ``decoder_kernel_size``, ``dropout`` (ASPP), ``aspp_dilations`` (default: the output stride's 6/12/18; small
    training crops need smaller ones, see model/aspp.py). The output is not passed through a sigmoid (§3.5).
    """

    def __init__(self, upsampler: str = "a2u", share: bool = True, up_kernel_size: int = 3,
                 encode_kernel_size: int = 6, groups: int = 1, rank: int = 1, decoder_kernel_size: int = 3,
                 dropout: float = 0.5, aspp_dilations: tuple[int, int, int] | None = None) -> None:
        super().__init__()
        if upsampler not in UPSAMPLERS:
            raise ValueError(f"A2UMatting: upsampler must be one of {UPSAMPLERS}, got {upsampler!r}")
        self.upsampler = upsampler
        self.up_kernel_size = up_kernel_size
        self.groups = groups
        use_a2u = upsampler == "a2u"

        def generator(channels: int) -> A2UKernelGenerator | None:
            if not use_a2u:
                return None
            return A2UKernelGenerator(channels, up_kernel_size, encode_kernel_size, groups, share, rank)

        # encoder (§3.3)
        self.layer0 = conv_bn_act(4, 64, 7)
        self.bilinear0 = generator(64)
        self.bilinear1 = generator(64)
        self.layer1 = _basic_blocks(64, 3)
        self.layer2_1 = A2UResidualBlock(64, 128, generator(128))
        self.layer2_2 = _basic_blocks(128, 3)
        self.layer3_1 = A2UResidualBlock(128, 256, generator(256))
        self.layer3_2 = _basic_blocks(256, 3)
        # context (§3.4)
        self.dconv_pp = ASPP(256, 256, OUTPUT_STRIDE, dropout,
                             dilations=None if aspp_dilations is None else tuple(aspp_dilations))
        # decoder (§3.5)
        self.decoder_layer4 = DecoderBlock(256, 128, decoder_kernel_size)
        self.decoder_layer3 = DecoderBlock(128, 64, decoder_kernel_size)
        self.decoder_layer2 = DecoderBlock(64, 64, decoder_kernel_size)
        self.decoder_layer1 = DecoderBlock(64, 32, decoder_kernel_size)
        self.short3 = conv_bn_act(128, 256, 3)
        self.short2 = conv_bn_act(64, 128, 3)
        self.short1 = conv_bn_act(64, 64, 3)
        self.short0 = conv_bn_act(4, 64, 3)
        self.pred = nn.Sequential(OrderedDict([
            ("0", conv_bn_act(32, 1, decoder_kernel_size)),
            ("1", nn.Conv2d(1, 1, decoder_kernel_size, padding=decoder_kernel_size // 2, bias=False)),
        ]))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """§3.6: Xavier-normal with the leaky-ReLU gain for every conv (biases 0), BN γ = 1, β = 0 — except the last
        1→1 convolution of the head, which starts as the identity (a centred delta).

        Why: the head is conv → BN(1 channel) → LeakyReLU → 1→1 conv. A random last filter whose taps sum to a
        negative value starts the net anti-correlated with its own features; the optimiser then drives the head's
        activations negative (LeakyReLU passes 1 % of them) and the prediction sticks near 0, a dead start seen in one
        seed of three on the CPU demo. The delta keeps the sign right from the first step; all other draws are as
        before (the Xavier draw of that filter still happens, so later parameters get the same random numbers)."""
        gain = nn.init.calculate_gain("leaky_relu", LEAKY_SLOPE)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.xavier_normal_(module.weight, gain)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.modules.batchnorm._BatchNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        last = self.pred[1].weight
        with torch.no_grad():
            last.zero_()
            last[0, 0, last.shape[2] // 2, last.shape[3] // 2] = 1.0

    # -- helpers ---------------------------------------------------------------------------------------------------

    def _down(self, x: torch.Tensor, generator: A2UKernelGenerator | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        if generator is None:
            return F.max_pool2d(x, 3, stride=2, padding=1), None
        down_kernels, up_kernels = generator(x)
        return a2u_downsample(x, down_kernels, generator.down_kernel_size, generator.groups), up_kernels

    def _up(self, x: torch.Tensor, up_kernels: torch.Tensor | None) -> torch.Tensor:
        if self.upsampler == "a2u":
            return a2u_upsample(x, up_kernels, self.up_kernel_size, self.groups)
        if self.upsampler == "bilinear":
            return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        return F.interpolate(x, scale_factor=2.0, mode="nearest")

    @staticmethod
    def check_input(x: torch.Tensor) -> None:
        """Raise ``ValueError`` unless ``x`` is a floating N×4×H×W tensor with H, W multiples of 16."""
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"A2UMatting: input must be N×4×H×W, got {shape}")
        if x.shape[1] != 4:
            raise ValueError(f"A2UMatting: input needs 4 channels (RGB + trimap), got {x.shape[1]}")
        if not x.is_floating_point():
            raise ValueError(f"A2UMatting: input must be floating point, got {x.dtype}")
        if x.shape[2] % OUTPUT_STRIDE != 0 or x.shape[3] % OUTPUT_STRIDE != 0:
            raise ValueError(f"A2UMatting: H and W must be multiples of {OUTPUT_STRIDE} (pad first), got "
                             f"{x.shape[2]}×{x.shape[3]}")

    def forward_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Run the net and return every named stage of §8.4 (``l0``, ``l0p``, ``l1``, ``l2``, ``l3``, ``aspp``,
        ``dec4``...``dec1``, ``out``); used by the shape tests and for debugging."""
        self.check_input(x)
        l0 = self.layer0(x)
        l0p, up0 = self._down(l0, self.bilinear0)
        l0_1p, up1 = self._down(l0p, self.bilinear1)
        l1 = self.layer1(l0_1p)
        l2p, up2 = self.layer2_1(l1)
        l2 = self.layer2_2(l2p)
        l3p, up3 = self.layer3_1(l2)
        l3 = self.layer3_2(l3p)
        context = self.dconv_pp(l3)
        dec4 = self.decoder_layer4(self._up(context, up3), self.short3(l2))
        dec3 = self.decoder_layer3(self._up(dec4, up2), self.short2(l1))
        dec2 = self.decoder_layer2(self._up(dec3, up1), self.short1(l0p))
        dec1 = self.decoder_layer1(self._up(dec2, up0), self.short0(x))
        out = self.pred(dec1)
        return {"l0": l0, "l0p": l0p, "l1": l1, "l2": l2, "l3": l3, "aspp": context,
                "dec4": dec4, "dec3": dec3, "dec2": dec2, "dec1": dec1, "out": out}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Raw alpha. Eval-mode, gradient-free float32 CPU calls run the fast inference copy of
        :mod:`model.cpu_inference` (same numbers up to float rounding); everything else runs this module as is."""
        if cpu_inference.wants_fast_path(self, x):
            self.check_input(x)
            fast = cpu_inference.inference_copy(self)
            return fast.forward_features(x.contiguous(memory_format=torch.channels_last))["out"].contiguous()
        return self.forward_features(x)["out"]

    def __getstate__(self) -> dict:
        """Pickle (MLflow logging, deepcopy) without the cached CPU inference copy."""
        return cpu_inference.drop_cache(super().__getstate__())


def count_parameters(net: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad or not trainable_only)


def parameter_groups(net: nn.Module, lr: float, backbone_lr_ratio: float = 0.01) -> list[dict]:
    """The two Adam parameter groups of §4.4, split by name.

    Group 0 (``lr``): every trainable parameter whose name contains ``dconv``, ``pred``, ``short``, ``bconv`` or
    ``bilinear`` (ASPP, decoder, head, skip convs, all A2U generators). Group 1 (``lr·backbone_lr_ratio``): the
    rest (the layer0–layer3 backbone convs and BNs). Works on a DDP-wrapped net too (names gain ``module.``).
    """
    high: list[nn.Parameter] = []
    low: list[nn.Parameter] = []
    for name, param in net.named_parameters():
        if not param.requires_grad:
            continue
        (high if any(key in name for key in HIGH_LR_NAME_KEYS) else low).append(param)
    return [{"params": high, "lr": lr, "name": "decoder"},
            {"params": low, "lr": lr * backbone_lr_ratio, "name": "backbone"}]


def convert_sync_batchnorm(net: nn.Module, process_group: object | None = None) -> nn.Module:
    """Replace every BatchNorm2d by SyncBatchNorm (for DDP; the official InPlaceABNSync) and return the net.

    Activations are separate modules, so nothing else changes; parameters and running statistics are kept.
    Call before wrapping in DistributedDataParallel; SyncBatchNorm needs an initialised process group at forward.
    """
    return nn.SyncBatchNorm.convert_sync_batchnorm(net, process_group)


def batchnorm_modules(net: nn.Module) -> Iterable[tuple[str, nn.modules.batchnorm._BatchNorm]]:
    """(name, module) of every batch-norm layer (the layers that were InPlaceABN in the official code)."""
    return ((name, m) for name, m in net.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm))
