"""Matting loss (docs/model.md §4.3) against a hand transcription and hand-computed values."""
from __future__ import annotations

import math

import pytest
import torch

from model.losses import CHARBONNIER_EPS, matting_loss, unknown_mask


def _sample(n=2, h=5, w=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    trimap = torch.randint(0, 3, (n, 1, h, w), generator=gen).float() * 127.5
    trimap = torch.where(trimap == 127.5, torch.full_like(trimap, 128.0), trimap) / 255.0
    alpha = torch.rand(n, 1, h, w, generator=gen, dtype=torch.float64).float()
    fg, bg = torch.rand(n, 3, h, w, generator=gen), torch.rand(n, 3, h, w, generator=gen)
    image = alpha * fg + (1 - alpha) * bg
    pred = torch.rand(n, 1, h, w, generator=gen) * 1.4 - 0.2  # raw output, may leave [0, 1]
    return pred, alpha, trimap, fg, bg, image


def test_matches_scalar_transcription():
    pred, alpha, trimap, fg, bg, image = _sample()
    eps = CHARBONNIER_EPS
    total = 0.0
    for s in range(pred.shape[0]):
        count = 0.0
        l_alpha = l_comp = 0.0
        for y in range(pred.shape[2]):
            for x in range(pred.shape[3]):
                u = 1.0 if round(float(trimap[s, 0, y, x]) * 255) == 128 else 0.0
                count += u
                p = float(pred[s, 0, y, x])
                l_alpha += math.sqrt(((p - float(alpha[s, 0, y, x])) * u) ** 2 + eps ** 2)
                for ch in range(3):
                    comp = p * float(fg[s, ch, y, x]) + (1 - p) * float(bg[s, ch, y, x]) - float(image[s, ch, y, x])
                    l_comp += math.sqrt((comp * u) ** 2 + eps ** 2)
        total += 0.5 * l_alpha / (count + 1) + 0.5 * l_comp / (count + 1)
    expected = total / pred.shape[0]
    assert matting_loss(pred, alpha, trimap, fg, bg, image).item() == pytest.approx(expected, rel=1e-5)


def test_hand_computed_single_pixel():
    # one unknown pixel of four; p = 0.5, α = 1, F = 1, B = 0, I = 1 → |p−α| = 0.5, |comp error| = 0.5 per channel
    trimap = torch.tensor([[[[128.0, 0.0], [255.0, 0.0]]]]) / 255.0
    pred = torch.full((1, 1, 2, 2), 0.5)
    alpha = torch.ones(1, 1, 2, 2)
    fg, bg, image = torch.ones(1, 3, 2, 2), torch.zeros(1, 3, 2, 2), torch.ones(1, 3, 2, 2)
    eps = CHARBONNIER_EPS
    l_alpha = (math.sqrt(0.25 + eps ** 2) + 3 * eps) / 2
    l_comp = (3 * math.sqrt(0.25 + eps ** 2) + 9 * eps) / 2
    assert matting_loss(pred, alpha, trimap, fg, bg, image).item() == pytest.approx(0.5 * l_alpha + 0.5 * l_comp)


def test_gradient_only_inside_unknown_region():
    pred, alpha, trimap, fg, bg, image = _sample()
    pred.requires_grad_()
    matting_loss(pred, alpha, trimap, fg, bg, image).backward()
    known = unknown_mask(trimap) == 0
    assert (pred.grad[known] == 0).all()
    assert (pred.grad[~known] != 0).any()


def test_perfect_prediction_costs_only_epsilon():
    pred, alpha, trimap, fg, bg, image = _sample()
    loss = matting_loss(alpha.clone(), alpha, trimap, fg, bg, image)
    assert 0 < loss.item() < 1e-4


def test_bad_shapes_raise():
    pred, alpha, trimap, fg, bg, image = _sample()
    with pytest.raises(ValueError, match="fg"):
        matting_loss(pred, alpha, trimap, fg[:, :1], bg, image)
    with pytest.raises(ValueError, match="trimap"):
        matting_loss(pred, alpha, trimap[:1], fg, bg, image)
    with pytest.raises(ValueError, match="pred"):
        matting_loss(pred[0], alpha, trimap, fg, bg, image)
