"""Second-foreground combination arithmetic (docs/model.md §4.2 step 1), in torch, only for the combined samples.

DALI's CPU arithmetic costs a few ns per element and operation, and a graph computes every sample of the batch, so
doing the combination there paid full-frame float passes for the half of the samples that are not combined. Here it
runs only where `plan.combine[j]` is set, on the loader's device.

alpha = 1 - (1 - a1)(1 - a2), in 8 bits: 255 - round((255 - a1)(255 - a2) / 255) (the same values DALI's float
arithmetic gave: the product p is an integer and p / 255 is never a tie, 2p would have to be 255 times an odd number).
fg = (fg1 a1 + fg2 (1 - a1) a2) / (alpha + 1e-5): the per-pixel weights of the two foregrounds are made here, on the
crop, and the DALI finish graph applies them to the warped foregrounds.
"""
from __future__ import annotations

import functools

import torch


@functools.lru_cache(maxsize=8)
def _union_table(device: torch.device) -> torch.Tensor:
    """The 256 x 256 table of combined alphas, flattened (index a1 * 256 + a2), in exact integer arithmetic."""
    a = torch.arange(256, dtype=torch.int64)
    p = (255 - a[:, None]) * (255 - a[None, :])
    return (255 - (2 * p + 255) // 510).to(torch.uint8).flatten().to(device)   # (2p + 255) // 510 = round(p / 255)


def combined_alpha(a1: torch.Tensor, a2: torch.Tensor) -> torch.Tensor:
    """uint8 alpha of the union of two uint8 alphas of the same shape: 255 - round((255 - a1)(255 - a2) / 255).

    A table look-up (int32 index, one gather): about half the cost of the same formula in float passes."""
    if a1.shape != a2.shape or a1.dtype != torch.uint8 or a2.dtype != torch.uint8:
        raise ValueError(f"alphas to combine must be uint8 of one shape, got {a1.dtype} {tuple(a1.shape)} and "
                         f"{a2.dtype} {tuple(a2.shape)}")
    index = a1.to(torch.int32).mul_(256).add_(a2)
    return _union_table(a1.device).index_select(0, index.flatten()).view(a1.shape)


def foreground_weights(a1: torch.Tensor, a2: torch.Tensor, alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 weights (w1, w2) of the warped foregrounds from uint8 crops of a1, a2 and the combined alpha:
    w1 = a1 / (alpha + 1e-5), w2 = (1 - a1) a2 / (alpha + 1e-5), all on the 0..1 scale."""
    inv = alpha.to(torch.float32).mul_(1.0 / 255.0).add_(1e-5).reciprocal_()
    f1 = a1.to(torch.float32).mul_(1.0 / 255.0)
    w2 = a2.to(torch.float32).mul_(1.0 / 255.0).mul_(1.0 - f1).mul_(inv)
    return f1.mul_(inv), w2
