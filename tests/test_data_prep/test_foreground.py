"""Foreground estimation on real photographs (datasets/real-dev, used here only to check the estimator): the
estimate re-composites to the image over the true background, and is much closer to the true foreground than
the photo itself on the soft pixels."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_prep.foreground import estimate_foreground, recomposite_error

REAL_DEV = Path(__file__).resolve().parents[2] / "datasets" / "real-dev"

# measured on these three with pymatting 1.1.16: re-composite error 0.012-0.016 (mean |.| on [0, 1], soft pixels)
TOLERANCE = 0.025


def _load(name: str) -> tuple[np.ndarray, ...]:
    rgb = lambda p: np.asarray(Image.open(p).convert("RGB"))  # noqa: E731
    return (rgb(REAL_DEV / f"merged/{name}_0.png"), np.asarray(Image.open(REAL_DEV / f"alpha/{name}.png").convert("L")),
            rgb(REAL_DEV / f"fg/{name}.png"), rgb(REAL_DEV / f"bg/{name}_0.png"))


@pytest.mark.parametrize("name", ["otter", "gnu_stand", "guineafowl"])
def test_estimate_recomposites_to_the_image(name: str) -> None:
    image, alpha, true_fg, bg = _load(name)
    est = estimate_foreground(image, alpha)
    assert est.shape == image.shape and est.dtype == np.uint8
    assert recomposite_error(image, alpha, est, bg) < TOLERANCE
    soft = (alpha > 0) & (alpha < 255)
    err_est = np.abs(est.astype(float) - true_fg)[soft].mean()
    err_photo = np.abs(image.astype(float) - true_fg)[soft].mean()
    assert err_est < 0.5 * err_photo


def test_size_mismatch_is_refused() -> None:
    with pytest.raises(ValueError, match="alpha is 5x4"):
        estimate_foreground(np.zeros((6, 6, 3), np.uint8), np.zeros((4, 5), np.uint8))
