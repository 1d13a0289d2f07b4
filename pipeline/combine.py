"""Second-foreground combination arithmetic (A2U_SPEC.md §4.2 step 1), in torch, only for the combined samples.

DALI's CPU arithmetic costs a few ns per element and operation, and a graph computes every sample of the batch, so
doing the combination there paid full-frame float passes for the half of the samples that are not combined. Here it
runs only where `plan.combine[j]` is set, on the loader's device.

alpha = 1 - (1 - a1)(1 - a2), in 8 bits: 255 - round((255 - a1)(255 - a2) / 255). The product p is an integer and
p / 255 is never a tie (2p would have to equal 255 times an odd number), so float32 rounding is exact.
fg = (fg1 a1 + fg2 (1 - a1) a2) / (alpha + 1e-5): the per-pixel weights of the two foregrounds are made here, on the
crop, and the DALI finish graph applies them to the warped foregrounds.
"""
from __future__ import annotations

import torch


def combined_alpha(a1: torch.Tensor, a2: torch.Tensor) -> torch.Tensor:
    """uint8 alpha of the union of two uint8 alphas of the same shape: 255 - round((255 - a1)(255 - a2) / 255)."""
    if a1.shape != a2.shape or a1.dtype != torch.uint8 or a2.dtype != torch.uint8:
        raise ValueError(f"alphas to combine must be uint8 of one shape, got {a1.dtype} {tuple(a1.shape)} and "
                         f"{a2.dtype} {tuple(a2.shape)}")
    p = a1.to(torch.float32).neg_().add_(255.0)
    p.mul_(a2.to(torch.float32).neg_().add_(255.0))       # (255 - a1)(255 - a2), exact in float32 (< 2^24)
    return p.mul_(1.0 / 255.0).round_().neg_().add_(255.0).to(torch.uint8)


def foreground_weights(a1: torch.Tensor, a2: torch.Tensor, alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 weights (w1, w2) of the warped foregrounds from uint8 crops of a1, a2 and the combined alpha:
    w1 = a1 / (alpha + 1e-5), w2 = (1 - a1) a2 / (alpha + 1e-5), all on the 0..1 scale."""
    inv = alpha.to(torch.float32).mul_(1.0 / 255.0).add_(1e-5).reciprocal_()
    f1 = a1.to(torch.float32).mul_(1.0 / 255.0)
    w2 = a2.to(torch.float32).mul_(1.0 / 255.0).mul_(1.0 - f1).mul_(inv)
    return f1.mul_(inv), w2
