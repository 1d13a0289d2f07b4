"""Trimap erosion (torch) against OpenCV's and scipy's binary erosion with the same elliptical element, and the crop
choice."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from scipy import ndimage

from pipeline.crop import choose_crop, crop_from_alpha
from pipeline.trimap import ellipse_rows, erode, make_trimap, make_trimap_region


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


def test_element_is_opencvs_ellipse() -> None:
    """The official code erodes with cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)), k in 1..29 (larger for
    larger crops)."""
    for size in range(1, 61):
        se, _ = _element(size)
        assert np.array_equal(se, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)).astype(bool)), size


@pytest.mark.parametrize("size", [2, 3, 4, 7, 12, 29])
def test_erode_matches_opencv_erode_with_the_official_element(size: int) -> None:
    rng = np.random.default_rng(100 + size)
    mask = ndimage.binary_opening(rng.random((53, 71)) > 0.3, iterations=1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    expected = cv2.erode(mask.astype(np.uint8), kernel).astype(bool)   # default border: outside counts as inside
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


def _blob_alpha(rng: np.random.Generator, h: int, w: int, blobs: int = 3) -> torch.Tensor:
    """Opaque ellipses with soft (ramped) borders on a transparent frame."""
    yy, xx = np.mgrid[0:h, 0:w]
    alpha = np.zeros((h, w))
    for _ in range(blobs):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = rng.uniform(4, h / 3), rng.uniform(4, w / 3)
        d = np.sqrt(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2)
        alpha = np.maximum(alpha, np.clip((1.2 - d) / 0.2, 0, 1))
    return torch.from_numpy(np.round(alpha * 255).astype(np.uint8))


@pytest.mark.parametrize("seed", range(6))
def test_trimap_region_equals_the_full_frame_window(seed: int) -> None:
    rng = np.random.default_rng(seed)
    alpha = _blob_alpha(rng, 70, 90)
    for fg_size, bg_size in ((1, 1), (2, 9), (13, 4), (29, 29)):
        full = make_trimap(alpha, fg_size, bg_size)
        for top, left, hh, ww in ((0, 0, 70, 90), (0, 0, 10, 12), (60, 80, 10, 10), (5, 30, 40, 33),
                                  tuple(int(v) for v in rng.integers(0, 40, 4)) ):
            hh, ww = min(hh, 70 - top) or 1, min(ww, 90 - left) or 1
            got = make_trimap_region(alpha, fg_size, bg_size, top, left, hh, ww)
            assert torch.equal(got, full[top:top + hh, left:left + ww]), (fg_size, bg_size, top, left, hh, ww)


@pytest.mark.parametrize("seed", range(8))
def test_crop_from_alpha_matches_choose_crop_on_the_full_trimap(seed: int) -> None:
    """Same window, same trimap crop and the same generator state afterwards, in each branch of the choice:
    enough admissible unknown centres, a few (random window), none admissible but some elsewhere, none at all."""
    rng = np.random.default_rng(seed)
    h, w, crop = 80, 96, 48
    cases = [_blob_alpha(rng, h, w)]
    corner = torch.zeros(h, w, dtype=torch.uint8)
    corner[:6, :6] = 255                                  # unknown only near the corner, no admissible centre
    few = torch.zeros(h, w, dtype=torch.uint8)
    few[h // 2, w // 2] = 128                             # one soft pixel: a handful of admissible unknown centres
    cases += [corner, few, torch.zeros(h, w, dtype=torch.uint8), torch.full((h, w), 255, dtype=torch.uint8)]
    branches = []
    for i, alpha in enumerate(cases):
        sizes = (1, 1) if i == 2 else tuple(int(v) for v in rng.integers(1, 12, 2))
        g1, g2 = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
        trimap = make_trimap(alpha, *sizes)
        want = choose_crop(trimap, crop, 10, g1)
        win, tri = crop_from_alpha(alpha, *sizes, crop, 10, g2)
        assert win == want
        assert torch.equal(tri, want.apply(trimap, crop))
        assert torch.equal(g1.get_state(), g2.get_state())
        admissible = int((trimap[crop // 2:h - crop // 2 + 1, crop // 2:w - crop // 2 + 1] == 128).sum())
        branches.append("none" if not bool((trimap == 128).any()) else "elsewhere" if admissible == 0
                        else "few" if admissible < 10 else "centred")
    assert branches[1:] == ["elsewhere", "few", "none", "none"]
