"""Trimaps as users store them: each common encoding read correctly, the ambiguous refused saying what was seen."""
from __future__ import annotations

import numpy as np
import pytest

from jobs.errors import JobError
from jobs.images import check_trimap

CANON = np.array([[0, 128, 255], [255, 128, 0]], np.uint8)


@pytest.mark.parametrize("stored", [
    CANON,
    np.where(CANON == 128, 127, CANON).astype(np.uint8),              # 0/127/255
    (CANON // 127).astype(np.uint8),                                  # label-coded 0/1/2
    np.clip(CANON.astype(int) + np.array([[3, -5, -9], [-2, 7, 11]]), 0, 255).astype(np.uint8),  # lossy drift
])
def test_common_encodings_read_as_0_128_255(stored: np.ndarray) -> None:
    np.testing.assert_array_equal(check_trimap(stored, "t.png"), CANON)


def test_all_background_and_all_unknown_trimaps_pass() -> None:
    np.testing.assert_array_equal(check_trimap(np.zeros((2, 2), np.uint8), "t.png"), np.zeros((2, 2), np.uint8))
    np.testing.assert_array_equal(check_trimap(np.full((2, 2), 128, np.uint8), "t.png"), np.full((2, 2), 128))


def test_a_binary_mask_is_refused_as_ambiguous() -> None:
    with pytest.raises(JobError, match=r"t.png: only the values \[0, 1\]"):
        check_trimap(np.array([[0, 1], [1, 0]], np.uint8), "t.png")


def test_an_alpha_matte_is_refused() -> None:
    ramp = np.tile(np.arange(256, dtype=np.uint8), (4, 1))
    with pytest.raises(JobError, match=r"m.png: 256 distinct values .* alpha matte or a photo"):
        check_trimap(ramp, "m.png")


def test_a_16_bit_grey_photo_is_read_as_its_grey_levels(tmp_path) -> None:
    from PIL import Image

    from data_prep.images import load_rgb
    from jobs.images import read_rgb

    ramp = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000).astype(np.uint16)
    path = tmp_path / "grey16.png"
    Image.fromarray(ramp).save(path)  # uint16 -> a 16-bit grey PNG
    rgb = read_rgb(path)
    assert rgb.shape == (8, 8, 3) and len(np.unique(rgb)) > 32  # not clipped to white
    np.testing.assert_array_equal(rgb[..., 0], np.rint(ramp / 257.0).astype(np.uint8))
    np.testing.assert_array_equal(rgb, load_rgb(path))  # one reader for both rooms
