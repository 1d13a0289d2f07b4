"""Second-foreground combination math in torch (pipeline/combine.py): exact 8-bit alpha and the fg weights."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.combine import combined_alpha, foreground_weights


def _all_pairs() -> tuple[torch.Tensor, torch.Tensor]:
    a1, a2 = torch.meshgrid(torch.arange(256), torch.arange(256), indexing="ij")
    return a1.to(torch.uint8), a2.to(torch.uint8)


def test_combined_alpha_is_the_rounded_union_for_every_pair() -> None:
    a1, a2 = _all_pairs()
    got = combined_alpha(a1, a2).numpy().astype(np.int64)
    p = (255 - a1.numpy().astype(np.int64)) * (255 - a2.numpy().astype(np.int64))
    want = 255 - (2 * p + 255) // 510            # 255 - round(p / 255) in integers (no ties exist)
    assert np.array_equal(got, want)
    f1, f2 = 255.0 - a1.numpy().astype(np.float32), 255.0 - a2.numpy().astype(np.float32)
    assert np.array_equal(got, np.round(255.0 - f1 * f2 / np.float32(255.0)))   # the float32 formula agrees
    assert np.array_equal(got, got.T)            # symmetric
    assert np.array_equal(got[:, 0], np.arange(256)) and bool((got[:, 255] == 255).all())  # 0 neutral, 255 absorbs
    assert a1.dtype == torch.uint8 and int(a1[3, 0]) == 3   # inputs untouched


def test_combined_alpha_refuses_mismatched_inputs() -> None:
    with pytest.raises(ValueError, match="uint8 of one shape"):
        combined_alpha(torch.zeros(4, 4, dtype=torch.uint8), torch.zeros(4, 5, dtype=torch.uint8))
    with pytest.raises(ValueError, match="uint8 of one shape"):
        combined_alpha(torch.zeros(4, 4), torch.zeros(4, 4))


def test_foreground_weights_reproduce_a_shared_colour() -> None:
    """With the same colour in both foregrounds the weighted sum gives it back wherever alpha > 0 (the weights sum
    to (a1 + (1 - a1) a2) / alpha = 1 up to the 8-bit rounding of alpha), and 0 where alpha = 0."""
    a1, a2 = _all_pairs()
    alpha = combined_alpha(a1, a2)
    w1, w2 = foreground_weights(a1, a2, alpha)
    assert w1.dtype == torch.float32 and bool((w1 >= 0).all()) and bool((w2 >= 0).all())
    total = 200.0 * (w1 + w2)
    inside = alpha > 0
    # |union - alpha| <= 0.5 / 255, so the relative error is at most 0.5 / (255 alpha) = 0.5 / alpha8
    err = (total[inside] - 200.0).abs()
    assert bool((err <= 100.0 / alpha[inside].to(torch.float32) + 1e-2).all())
    assert float((total[alpha > 50] - 200.0).abs().max()) < 2.0     # < 1 % where alpha is not tiny
    assert float(total[~inside].abs().max()) == 0.0
    # a1 = 255: only the first foreground shows; a1 = 0: only the second
    assert bool((w2[255] == 0).all()) and bool((w1[0] == 0).all())
