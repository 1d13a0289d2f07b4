"""Metrics against hand-computed small cases and a literal, loop-based transcription of the MATLAB scripts."""
from __future__ import annotations

import math
from collections import deque

import numpy as np
import pytest

from model.metrics import (
    MetricAccumulator,
    connectivity_error,
    evaluate,
    gauss_gradient,
    gauss_gradient_kernel,
    gradient_error,
    mse,
    sad,
)

SIGMA = 1.4


def u8(rows: list[list[int]]) -> np.ndarray:
    return np.array(rows, dtype=np.uint8)


def full_unknown(shape: tuple[int, int]) -> np.ndarray:
    return np.full(shape, 128, dtype=np.uint8)


# ---------------------------------------------------------------------------------------------------------------------
# SAD / MSE
# ---------------------------------------------------------------------------------------------------------------------
def test_sad_and_mse_score_only_unknown_pixels() -> None:
    pred = u8([[10, 20], [30, 40]])
    alpha = u8([[0, 20], [60, 100]])
    trimap = u8([[128, 128], [128, 0]])  # bottom-right (error 60) is known: not scored
    # unknown errors: |10-0| = 10, |20-20| = 0, |30-60| = 30  ->  40 alpha units
    assert sad(pred, alpha, trimap) == pytest.approx(40 / 255 / 1000, rel=1e-12)
    # squared errors 100 + 0 + 900 over 3 unknown pixels, on the [0, 1] scale
    assert mse(pred, alpha, trimap) == pytest.approx(1000 / 255**2 / 3, rel=1e-12)


def test_sad_uses_int_arithmetic_without_uint8_wraparound() -> None:
    pred, alpha = u8([[0]]), u8([[255]])
    # 0 - 255 would wrap to 1 in uint8; the true error is 255 units = 1.0 -> 0.001 after /1000
    assert sad(pred, alpha, full_unknown((1, 1))) == pytest.approx(1 / 1000)
    assert mse(pred, alpha, full_unknown((1, 1))) == pytest.approx(1.0)


def test_identical_inputs_score_zero() -> None:
    rng = np.random.default_rng(1)
    alpha = rng.integers(0, 256, (24, 31), dtype=np.uint8)
    trimap = rng.choice(np.array([0, 128, 255], dtype=np.uint8), size=(24, 31))
    assert evaluate(alpha, alpha.copy(), trimap) == {"SAD": 0.0, "MSE": 0.0, "Grad": 0.0, "Conn": 0.0}


def test_no_unknown_pixels_scores_zero() -> None:
    pred = u8([[0, 255], [3, 9]])
    alpha = u8([[255, 0], [200, 100]])
    trimap = u8([[0, 255], [255, 0]])
    assert evaluate(pred, alpha, trimap) == {"SAD": 0.0, "MSE": 0.0, "Grad": 0.0, "Conn": 0.0}


def test_inputs_are_not_modified() -> None:
    rng = np.random.default_rng(2)
    pred = rng.integers(0, 256, (20, 20), dtype=np.uint8)
    alpha = rng.integers(0, 256, (20, 20), dtype=np.uint8)
    trimap = full_unknown((20, 20))
    copies = pred.copy(), alpha.copy(), trimap.copy()
    evaluate(pred, alpha, trimap)
    for before, after in zip(copies, (pred, alpha, trimap)):
        np.testing.assert_array_equal(before, after)


# ---------------------------------------------------------------------------------------------------------------------
# Grad
# ---------------------------------------------------------------------------------------------------------------------
def _g(u: float) -> float:
    return math.exp(-u * u / (2 * SIGMA**2)) / (SIGMA * math.sqrt(2 * math.pi))


def _dg(u: float) -> float:
    return -u * _g(u) / SIGMA**2


def test_gradient_kernel_is_the_matlab_gaussgradient_kernel() -> None:
    # half size = ceil(1.4 * sqrt(-2 ln(sqrt(2 pi) * 1.4 * 0.01))) = ceil(1.4 * sqrt(6.6995)) = ceil(3.624) = 4 -> 9x9
    kernel = gauss_gradient_kernel(SIGMA)
    assert kernel.shape == (9, 9)
    raw = np.array([[_g(i) * _dg(j) for j in range(-4, 5)] for i in range(-4, 5)])  # rows Gaussian, cols derivative
    np.testing.assert_allclose(kernel, raw / np.sqrt((raw**2).sum()), rtol=1e-12)
    assert (kernel**2).sum() == pytest.approx(1.0)
    assert kernel[4, 5] < 0 < kernel[4, 3]  # g'(+1) < 0: positive column offsets carry negative weights


def test_gauss_gradient_is_true_convolution_with_replicate_borders() -> None:
    rng = np.random.default_rng(3)
    image = rng.random((7, 11))
    hx = gauss_gradient_kernel(SIGMA)
    padded = np.pad(image, 4, mode="edge")  # MATLAB 'replicate'
    flipped = hx[::-1, ::-1]  # 'conv' flips the kernel
    expected_gx = np.array([[np.sum(padded[y:y + 9, x:x + 9] * flipped) for x in range(11)] for y in range(7)])
    flipped_y = hx.T[::-1, ::-1]
    expected_gy = np.array([[np.sum(padded[y:y + 9, x:x + 9] * flipped_y) for x in range(11)] for y in range(7)])
    gx, gy = gauss_gradient(image, SIGMA)
    np.testing.assert_allclose(gx, expected_gx, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(gy, expected_gy, rtol=1e-10, atol=1e-13)


def test_grad_of_a_vertical_step_against_flat_prediction() -> None:
    # alpha: columns 0..5 are 0, columns 6..11 are 255 (mat2gray -> 0/1 step); pred is flat (zero gradient everywhere).
    alpha = np.zeros((5, 12), dtype=np.uint8)
    alpha[:, 6:] = 255
    pred = np.full((5, 12), 77, dtype=np.uint8)
    trimap = np.zeros((5, 12), dtype=np.uint8)
    trimap[:, 4:8] = 128  # only columns 4..7 are scored
    # The step is constant along y, so gy = 0 (sum of g' is 0) and, with replicate borders,
    # gx(x) = (sum_a g(a)) * (sum_b g'(b) * step(clamp(x - b))) / N,  N = ||outer(g, g')||_2.
    taps = range(-4, 5)
    norm = math.sqrt(sum(_g(a) ** 2 for a in taps) * sum(_dg(b) ** 2 for b in taps))
    g_sum = sum(_g(a) for a in taps)

    def step(col: int) -> float:
        return 1.0 if min(max(col, 0), 11) >= 6 else 0.0

    expected = 0.0
    for x in range(4, 8):
        gx = g_sum * sum(_dg(b) * step(x - b) for b in taps) / norm
        expected += 5 * gx**2  # 5 rows, |grad pred| = 0
    assert gradient_error(pred, alpha, trimap) == pytest.approx(expected / 1000, rel=1e-6)
    assert expected > 0


def test_grad_rescales_each_matte_to_its_own_min_max() -> None:
    # pred = alpha / 2 + 50 is an increasing affine map of alpha: after mat2gray both are the same 0/0.5/1 image,
    # so Grad is 0 even though SAD is not.
    alpha = u8([[0, 100, 200, 200], [0, 0, 100, 200], [100, 200, 200, 0]])
    pred = (alpha // 2 + 50).astype(np.uint8)
    trimap = full_unknown(alpha.shape)
    assert gradient_error(pred, alpha, trimap) == 0.0
    assert sad(pred, alpha, trimap) > 0
    # whereas a non-affine change of contrast is penalised
    bent = alpha.copy()
    bent[alpha == 100] = 20
    assert gradient_error(bent, alpha, trimap) > 0


# ---------------------------------------------------------------------------------------------------------------------
# Conn
# ---------------------------------------------------------------------------------------------------------------------
def test_conn_isolated_pixel_row() -> None:
    # Both mattes share the block 0..2 (255) and differ at pixel 4 (alpha 204 = 0.8, pred 102 = 0.4).
    alpha = u8([[255, 255, 255, 0, 204]])
    pred = u8([[255, 255, 255, 0, 102]])
    # t = 0.1: intersection {0,1,2} + {4}; Omega = {0,1,2}; pixels 3, 4 get level 0. Pixels 0..2 stay -> level 1.
    # pixel 4: d_pred = 0.4 -> phi 0.6; d_alpha = 0.8 -> phi 0.2; others: phi 1 in both.  |0.6 - 0.2| = 0.4
    assert connectivity_error(pred, alpha, full_unknown((1, 5))) == pytest.approx(0.4 / 1000, rel=1e-9)


def test_conn_uses_4_connectivity() -> None:
    # (0,0) touches the 2x2 block only diagonally: a separate 4-connected component.
    alpha = u8([[255, 0, 0], [0, 255, 255], [0, 255, 255]])
    pred = alpha.copy()
    pred[0, 0] = 115  # 0.45098
    # 4-conn: Omega = block from t = 0.1 on, so level(0,0) = 0:
    #   d_pred = 0.45098 >= 0.15 -> phi = 1 - 115/255 = 140/255 ; d_alpha = 1 -> phi = 0 ; Conn = 140/255 / 1000.
    # (8-conn would keep (0,0) until t = 0.5, level 0.4, d_pred = 0.051 < 0.15 -> phi 1, phi_alpha 0.4 -> 0.6.)
    assert connectivity_error(pred, alpha, full_unknown((3, 3))) == pytest.approx(140 / 255 / 1000, rel=1e-9)


def test_conn_takes_the_largest_component_not_the_first() -> None:
    # Components of the intersection for t <= 0.45: {0} (size 1, first) and {2, 3} (size 2, largest).
    alpha = u8([[255, 0, 255, 255, 0, 0]])
    pred = u8([[115, 0, 255, 255, 0, 0]])
    # Largest = {2,3}: pixel 0 gets level 0 -> |phi_pred - phi_alpha| = |(1 - 115/255) - 0| = 140/255.
    # (Taking the first component would give level 0.4 at pixel 0 and 0.6 instead.)
    assert connectivity_error(pred, alpha, full_unknown((1, 6))) == pytest.approx(140 / 255 / 1000, rel=1e-9)


def test_conn_breaks_ties_in_matlab_column_major_order() -> None:
    # Two single-pixel components: A = (0, 2) comes first in row-major order, B = (2, 0) in column-major order.
    # bwconncomp numbers B first and max() returns the first of equal sizes, so Omega = B.
    alpha = np.zeros((3, 3), dtype=np.uint8)
    alpha[0, 2] = alpha[2, 0] = 255
    pred = alpha.copy()
    pred[0, 2] = 115
    # Omega = B: A gets level 0 at t = 0.1 -> |(1 - 115/255) - 0| = 140/255 ; B keeps level 1 -> 0.
    # (Omega = A would give level 0 to B (phi 0 in both) and level 0.4 to A -> 0.6 instead.)
    assert connectivity_error(pred, alpha, full_unknown((3, 3))) == pytest.approx(140 / 255 / 1000, rel=1e-9)


def test_conn_threshold_with_empty_intersection_is_skipped() -> None:
    # No pixel has both mattes >= 0.1, so every threshold is skipped, every level ends at 1, d <= 0 in both mattes,
    # phi = 1 everywhere and Conn = 0 (what the MATLAB script does; docs/model.md §5.2 "skip if empty").
    pred = u8([[0, 0, 0]])
    alpha = u8([[255, 255, 255]])
    assert connectivity_error(pred, alpha, full_unknown((1, 3))) == 0.0
    assert sad(pred, alpha, full_unknown((1, 3))) == pytest.approx(3 / 1000)


def test_conn_scores_only_unknown_pixels() -> None:
    alpha = u8([[255, 255, 255, 0, 204]])
    pred = u8([[255, 255, 255, 0, 102]])
    trimap = u8([[128, 128, 128, 128, 255]])  # the only differing pixel is known
    assert connectivity_error(pred, alpha, trimap) == 0.0


# ---------------------------------------------------------------------------------------------------------------------
# literal transcription of the four MATLAB scripts (loops, explicit padding, flood fill in column-major order)
# ---------------------------------------------------------------------------------------------------------------------
def _matlab_components(mask: np.ndarray) -> list[list[tuple[int, int]]]:
    """bwconncomp(mask, 4).PixelIdxList, in MATLAB's order (scan in column-major order)."""
    rows, cols = mask.shape
    seen = np.zeros_like(mask, dtype=bool)
    components = []
    for c in range(cols):
        for r in range(rows):
            if mask[r, c] and not seen[r, c]:
                queue, comp = deque([(r, c)]), []
                seen[r, c] = True
                while queue:
                    y, x = queue.popleft()
                    comp.append((y, x))
                    for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                        if 0 <= ny < rows and 0 <= nx < cols and mask[ny, nx] and not seen[ny, nx]:
                            seen[ny, nx] = True
                            queue.append((ny, nx))
                components.append(comp)
    return components


def _matlab_mat2gray(a: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64)
    lo, hi = a.min(), a.max()
    return np.clip(a, 0, 1) if lo == hi else (a - lo) / (hi - lo)


def _matlab_reference(pred: np.ndarray, alpha: np.ndarray, trimap: np.ndarray) -> dict[str, float]:
    unknown = trimap == 128
    p, a = pred.astype(np.float64), alpha.astype(np.float64)
    out = {"SAD": np.sum(np.abs(p - a)[unknown]) / 255 / 1000,
           "MSE": np.sum(((p - a) / 255)[unknown] ** 2) / unknown.sum()}
    hx = np.array([[_g(i) * _dg(j) for j in range(-4, 5)] for i in range(-4, 5)])
    hx /= np.sqrt(np.sum(hx * hx))

    def amplitude(img: np.ndarray) -> np.ndarray:
        padded = np.pad(_matlab_mat2gray(img), 4, mode="edge")
        h, w = img.shape
        gx = np.zeros((h, w))
        gy = np.zeros((h, w))
        for y in range(h):
            for x in range(w):
                window = padded[y:y + 9, x:x + 9]
                gx[y, x] = np.sum(window * hx[::-1, ::-1])
                gy[y, x] = np.sum(window * hx.T[::-1, ::-1])
        return np.sqrt(gx**2 + gy**2)

    out["Grad"] = np.sum(((amplitude(pred) - amplitude(alpha)) ** 2)[unknown]) / 1000
    p, a = p / 255, a / 255
    thresholds = [i / 10 for i in range(11)]
    level = -np.ones(pred.shape)
    for i in range(1, 11):
        components = _matlab_components((p >= thresholds[i]) & (a >= thresholds[i]))
        if not components:
            continue
        biggest = max(components, key=len)  # max() keeps the first of equal sizes, like MATLAB's max
        omega = np.zeros(pred.shape, dtype=bool)
        for y, x in biggest:
            omega[y, x] = True
        level[(level == -1) & ~omega] = thresholds[i - 1]
    level[level == -1] = 1
    dp, da = p - level, a - level
    phi_p, phi_a = 1 - dp * (dp >= 0.15), 1 - da * (da >= 0.15)
    out["Conn"] = np.sum(np.abs(phi_p - phi_a)[unknown]) / 1000
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_evaluate_matches_literal_matlab_transcription(seed: int) -> None:
    rng = np.random.default_rng(seed)
    h, w = 17, 23
    yy, xx = np.mgrid[:h, :w]
    # smooth blobs plus noise, so that several components appear at the thresholds
    alpha = np.clip(255 * (np.sin(xx / 3.0 + seed) * np.cos(yy / 4.0) + 0.3) + rng.normal(0, 20, (h, w)), 0, 255)
    alpha = alpha.astype(np.uint8)
    pred = np.clip(alpha.astype(int) + rng.integers(-60, 61, (h, w)), 0, 255).astype(np.uint8)
    trimap = rng.choice(np.array([0, 128, 128, 255], dtype=np.uint8), size=(h, w))
    got = evaluate(pred, alpha, trimap)
    expected = _matlab_reference(pred, alpha, trimap)
    assert got["Conn"] > 0 and got["Grad"] > 0
    for name in ("SAD", "MSE", "Grad", "Conn"):
        assert got[name] == pytest.approx(expected[name], rel=1e-6), name


# ---------------------------------------------------------------------------------------------------------------------
# bad input, accumulator
# ---------------------------------------------------------------------------------------------------------------------
def test_bad_trimap_values_are_named() -> None:
    pred = alpha = np.zeros((2, 2), dtype=np.uint8)
    trimap = u8([[0, 127], [5, 128]])
    with pytest.raises(ValueError, match=r"5, 127"):
        evaluate(pred, alpha, trimap)
    with pytest.raises(ValueError, match="trimap"):
        connectivity_error(pred, alpha, trimap)


@pytest.mark.parametrize(
    ("pred", "alpha", "trimap", "message"),
    [
        (np.zeros((2, 2), np.float32), np.zeros((2, 2), np.uint8), np.zeros((2, 2), np.uint8), "pred.*uint8"),
        (np.zeros((2, 2, 1), np.uint8), np.zeros((2, 2), np.uint8), np.zeros((2, 2), np.uint8), "pred.*2-D"),
        (np.zeros((2, 2), np.uint8), np.zeros((2, 3), np.uint8), np.zeros((2, 2), np.uint8), "shape mismatch"),
        (np.zeros((2, 2), np.uint8), [[0, 0], [0, 0]], np.zeros((2, 2), np.uint8), "alpha.*numpy"),
    ],
)
def test_bad_shapes_and_dtypes(pred: object, alpha: object, trimap: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        evaluate(pred, alpha, trimap)  # type: ignore[arg-type]


def test_accumulator_means_per_image_scores() -> None:
    acc = MetricAccumulator()
    with pytest.raises(ValueError, match="no images"):
        acc.mean()
    trimap = full_unknown((1, 2))
    first = acc.update(u8([[0, 0]]), u8([[255, 0]]), trimap)  # SAD 1/1000, MSE 0.5
    second = acc.update(u8([[0, 0]]), u8([[0, 0]]), trimap)  # all zero
    assert first["SAD"] == pytest.approx(1 / 1000) and second["SAD"] == 0.0
    mean = acc.mean()
    assert acc.count == 2
    assert mean["SAD"] == pytest.approx(0.5 / 1000)
    assert mean["MSE"] == pytest.approx(0.25)
    with pytest.raises(ValueError, match="lack"):
        acc.add({"SAD": 1.0})
    acc.reset()
    assert acc.count == 0
