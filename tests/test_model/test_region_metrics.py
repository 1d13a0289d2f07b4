"""MAD and SAD by trimap region, against values computed by hand on tiny arrays."""
from __future__ import annotations

import numpy as np
import pytest

from model.metrics import METRIC_NAMES, REGION_METRIC_NAMES, evaluate, evaluate_all, region_errors

# trimap regions:  bg | unknown | unknown | fg
PRED = np.array([[0, 100, 200, 255], [51, 0, 255, 204]], np.uint8)
ALPHA = np.array([[0, 151, 200, 255], [0, 0, 0, 255]], np.uint8)
TRIMAP = np.array([[0, 128, 128, 255], [0, 128, 128, 255]], np.uint8)
# |pred - alpha|:    0, 51, 0, 0 / 51, 0, 255, 51   -> bg 51, unknown 51 + 255 = 306, fg 51, all 408


def test_region_errors_by_hand() -> None:
    e = region_errors(PRED, ALPHA, TRIMAP)
    assert e["SAD_bg"] == pytest.approx(51 / 255 / 1000)
    assert e["SAD_fg"] == pytest.approx(51 / 255 / 1000)
    assert e["SAD_unknown"] == pytest.approx(306 / 255 / 1000)
    assert e["SAD_all"] == pytest.approx(408 / 255 / 1000)
    assert e["MAD"] == pytest.approx(306 / 255 / 4)     # 4 unknown pixels
    assert e["MAD_all"] == pytest.approx(408 / 255 / 8)  # 8 pixels
    assert e["SAD_unknown"] == pytest.approx(evaluate(PRED, ALPHA, TRIMAP)["SAD"])
    assert e["SAD_fg"] + e["SAD_bg"] + e["SAD_unknown"] == pytest.approx(e["SAD_all"])


def test_no_unknown_pixel_gives_zero_mad_and_perfect_prediction_gives_zeros() -> None:
    known = np.where(TRIMAP == 128, 255, TRIMAP).astype(np.uint8)
    e = region_errors(PRED, ALPHA, known)
    assert e["MAD"] == 0.0 and e["SAD_unknown"] == 0.0
    assert e["MAD_all"] == pytest.approx(408 / 255 / 8)
    assert all(v == 0.0 for v in region_errors(ALPHA, ALPHA, TRIMAP).values())


def test_evaluate_all_keeps_the_official_four_unchanged() -> None:
    full = evaluate_all(PRED, ALPHA, TRIMAP)
    assert tuple(full) == METRIC_NAMES + REGION_METRIC_NAMES
    assert {k: full[k] for k in METRIC_NAMES} == evaluate(PRED, ALPHA, TRIMAP)


def test_region_errors_check_their_inputs() -> None:
    with pytest.raises(ValueError, match="shape mismatch"):
        region_errors(PRED, ALPHA[:, :3], TRIMAP)
    with pytest.raises(ValueError, match="trimap may only hold"):
        region_errors(PRED, ALPHA, np.full_like(TRIMAP, 7))
