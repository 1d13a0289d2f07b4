"""Training loss of A2U matting (docs/model.md §4.3): alpha + composition Charbonnier losses over the unknown region.

Per sample, with U the unknown mask (trimap == 128/255) and ε = 1e-6:
  L_α    = Σ_pixels √(((p − α)·U)² + ε²) / (ΣU + 1)
  L_comp = Σ_{pixels,RGB} √(((p·F + (1 − p)·B − I)·U)² + ε²) / (ΣU + 1)
and the loss is the batch mean of 0.5·L_α + 0.5·L_comp. Pixels outside U contribute the constant ε (no gradient),
exactly as in the official ``weighted_loss``; the prediction is the raw network output (no clipping).
"""
from __future__ import annotations

import torch

__all__ = ["matting_loss", "alpha_loss", "composition_loss", "unknown_mask", "CHARBONNIER_EPS"]

CHARBONNIER_EPS = 1e-6
_UNKNOWN = 128.0 / 255.0


def unknown_mask(trimap: torch.Tensor) -> torch.Tensor:
    """1 where the trimap (float, values {0, 128, 255}/255) is unknown, else 0 (tolerant to float rounding)."""
    return ((trimap - _UNKNOWN).abs() < 0.5 / 255.0).to(trimap.dtype)


def _check(name: str, tensor: torch.Tensor, n: int, channels: int, size: tuple[int, int]) -> None:
    if tensor.dim() != 4 or tensor.shape[0] != n or tensor.shape[1] != channels or tuple(tensor.shape[2:]) != size:
        raise ValueError(f"matting loss: {name} must be {n}×{channels}×{size[0]}×{size[1]}, got {tuple(tensor.shape)}")


def _per_sample(values: torch.Tensor, unknown: torch.Tensor) -> torch.Tensor:
    charbonnier = torch.sqrt(values * values + CHARBONNIER_EPS ** 2)
    return charbonnier.flatten(1).sum(1) / (unknown.flatten(1).sum(1) + 1.0)


def alpha_loss(pred: torch.Tensor, alpha: torch.Tensor, unknown: torch.Tensor) -> torch.Tensor:
    """Per-sample alpha Charbonnier loss L_α (shape N)."""
    return _per_sample((pred - alpha) * unknown, unknown)


def composition_loss(pred: torch.Tensor, fg: torch.Tensor, bg: torch.Tensor, image: torch.Tensor,
                     unknown: torch.Tensor) -> torch.Tensor:
    """Per-sample composition Charbonnier loss L_comp (shape N), summed over RGB, divided by the 1-channel ΣU + 1."""
    composite = pred * fg + (1.0 - pred) * bg
    return _per_sample((composite - image) * unknown, unknown)


def matting_loss(pred: torch.Tensor, alpha: torch.Tensor, trimap: torch.Tensor, fg: torch.Tensor, bg: torch.Tensor,
                 image: torch.Tensor, alpha_weight: float = 0.5) -> torch.Tensor:
    """Batch mean of ``alpha_weight``·L_α + (1 − ``alpha_weight``)·L_comp (0.5/0.5 in the paper).

    pred, alpha, trimap: N×1×H×W; fg, bg, image: N×3×H×W; all in [0, 1] (trimap as value/255).
    """
    if pred.dim() != 4:
        raise ValueError(f"matting loss: pred must be N×1×H×W, got {tuple(pred.shape)}")
    n, size = pred.shape[0], (pred.shape[2], pred.shape[3])
    _check("pred", pred, n, 1, size)
    _check("alpha", alpha, n, 1, size)
    _check("trimap", trimap, n, 1, size)
    for name, tensor in (("fg", fg), ("bg", bg), ("image", image)):
        _check(name, tensor, n, 3, size)
    unknown = unknown_mask(trimap)
    per_sample = (alpha_weight * alpha_loss(pred, alpha, unknown)
                  + (1.0 - alpha_weight) * composition_loss(pred, fg, bg, image, unknown))
    return per_sample.mean()
