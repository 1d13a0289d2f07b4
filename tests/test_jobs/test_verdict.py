"""The demo's verdict: fails only on a loss that does not fall or a model no better than trimap-only."""
from __future__ import annotations

import pytest

from jobs.verdict import FLOOR_RATIO_FAIL, LOSS_FALL_MAX, judge, loss_fall

FALLING = [1.0] * 4 + [0.8] * 4 + [0.6] * 4 + [0.4] * 4


def test_loss_fall_is_last_quarter_over_first() -> None:
    assert loss_fall(FALLING) == pytest.approx(0.4)
    assert loss_fall([1.0] * 7) is None


@pytest.mark.parametrize("ratio", [0.5, 0.67, 0.82, 0.95])
def test_learned_models_across_the_measured_spread_pass(ratio: float) -> None:
    v = judge(FALLING, sad=1.4 * ratio, floor_sad=1.4, real_sad=9.0, real_floor_sad=10.72)
    assert v.ok, v.lines
    assert any("real-dev" in line and "not gating" in line for line in v.lines)


def test_no_better_than_the_floor_fails() -> None:
    assert not judge(FALLING, sad=1.4 * FLOOR_RATIO_FAIL, floor_sad=1.4).ok
    assert not judge(FALLING, sad=1.6, floor_sad=1.4).ok


def test_flat_or_rising_loss_fails_even_with_a_good_score() -> None:
    flat = [1.0] * 8 + [LOSS_FALL_MAX + 0.01] * 8
    v = judge(flat, sad=0.5, floor_sad=1.4)
    assert not v.ok and any("NOT FALLING" in line for line in v.lines)
    assert not judge(list(reversed(FALLING)), sad=0.5, floor_sad=1.4).ok


def test_too_few_losses_or_empty_floor_fail() -> None:
    assert not judge([1.0, 0.5], sad=0.5, floor_sad=1.4).ok
    assert not judge(FALLING, sad=0.0, floor_sad=0.0).ok


def test_real_photo_scores_never_gate() -> None:
    assert judge(FALLING, sad=0.9, floor_sad=1.4, real_sad=20.0, real_floor_sad=10.72).ok
