"""Trimap erosion (torch) against scipy's binary erosion with the same elliptical element, and the crop choice."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from pipeline.crop import choose_crop
from pipeline.trimap import ellipse_rows, erode, make_trimap


def _element(size: int) -> tuple[np.ndarray, tuple[int, int]]:
    se = np.zeros((size, size), bool)
    a = size // 2
    for dy, lo, hi in ellipse_rows(size):
        se[dy + a, lo + a:hi + a + 1] = True
    return se, (0, 0)


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 13, 29])
def test_erode_matches_scipy(size: int) -> None:
    rng = np.random.default_rng(size)
    mask = ndimage.binary_opening(rng.random((61, 47)) > 0.25, iterations=1)
    se, _ = _element(size)
    # scipy centres even-sized elements at size // 2 too (origin 0 means the centre pixel size // 2)
    expected = ndimage.binary_erosion(mask, structure=se, border_value=1, origin=0)
    got = erode(torch.from_numpy(mask), size).numpy()
    assert np.array_equal(got, expected)


def test_ellipse_shape_is_round_and_symmetric() -> None:
    se, _ = _element(29)
    assert se[14].all() and se[:, 14].all()           # full middle row and column
    assert not se[0, 0] and not se[-1, -1]            # corners cut
    assert np.array_equal(se, se[::-1]) and np.array_equal(se, se[:, ::-1])


def test_make_trimap_values_and_agreement() -> None:
    alpha = torch.zeros(80, 90, dtype=torch.uint8)
    alpha[20:60, 20:70] = 255
    alpha[18:20, 20:70] = 100
    trimap = make_trimap(alpha, 7, 5)
    assert set(trimap.unique().tolist()) == {0, 128, 255}
    assert bool((alpha[trimap == 255] == 255).all()) and bool((alpha[trimap == 0] == 0).all())
    assert bool((trimap[alpha == 100] == 128).all())
    # erosion widens the unknown band beyond the soft pixels, by the element's half-size
    # column 45: bg band 2 + soft rows 2 + fg band 3 above; fg band 3 + bg band 2 below
    assert int((trimap[:, 45] == 128).sum()) == 2 + 2 + 3 + 3 + 2


def test_choose_crop_centres_on_unknown_pixel() -> None:
    trimap = torch.zeros(100, 120, dtype=torch.uint8)
    trimap[40:70, 50:80] = 128
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        win = choose_crop(trimap, 32, 10, gen)
        assert win.is_window
        assert int(trimap[win.top + 16, win.left + 16]) == 128
        assert win.apply(trimap, 32).shape == (32, 32)
    empty = torch.zeros(50, 60, dtype=torch.uint8)
    win = choose_crop(empty, 32, 10, gen)          # no unknown pixel: resize the whole frame
    assert not win.is_window and win.apply(empty, 32).shape == (32, 32)
