"""Composition-1k matting metrics, ported from the DIM authors' MATLAB evaluation code (docs/model.md §5.2).

Why a port: the Python metrics shipped with the official A2U code differ from the MATLAB reference that produced every
published table (they min-max normalise before SAD/MSE, use another gradient filter and divide Grad by 10). The
functions here follow the MATLAB scripts ``compute_sad_loss``, ``compute_mse_loss``, ``compute_gradient_loss`` and
``compute_connectivity_error`` line by line, vectorised with NumPy/SciPy:

* inputs are 2-D ``uint8`` mattes on 0..255 and a trimap with values in {0, 128, 255}; only ``trimap == 128`` pixels
  are scored (the whole image still feeds the Grad filter, the Grad min-max rescaling and Conn's components);
* numbers come in the units of the published tables: SAD/1000, MSE as a mean over the unknown region, Grad/1000,
  Conn/1000;
* inputs are never modified.

Deliberate, documented differences from the MATLAB code (all below 1e-6 relative on real images):

* sums are accumulated in float64 (MATLAB accumulates its ``single`` maps in single precision);
* with no unknown pixel MATLAB's MSE is 0/0 = NaN; here it is 0.0, so one such image cannot turn a dataset mean into
  NaN (SAD, Grad and Conn are 0 there in both).

Conn on an empty intersection: when no pixel has both mattes ≥ t, MATLAB indexes an empty cell list, which leaves the
level map unchanged; this port therefore skips that threshold (and every higher one, which are empty too), as
docs/model.md §5.2 specifies. The mmagic/mmeval Python port instead treats the component as empty and assigns the
previous threshold, which gives different numbers for such images.

Region errors (:func:`region_errors`, not in the MATLAB code; used by AIM-500-, P3M- and SIMD-style reports) split
the absolute error by the trimap: MAD is the mean of |pred − alpha|/255 (on [0, 1], over the unknown region, and
over the whole image as ``MAD_all``), SAD is split into ``SAD_fg`` (trimap 255), ``SAD_bg`` (trimap 0),
``SAD_unknown`` (trimap 128, equal to the official SAD) and ``SAD_all`` (every pixel), all in the SAD table unit
(sum/1000). Errors in the known regions show a trimap that contradicts the truth, or a prediction that ignores it.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from scipy import ndimage

__all__ = [
    "METRIC_NAMES",
    "REGION_METRIC_NAMES",
    "MetricAccumulator",
    "connectivity_error",
    "evaluate",
    "evaluate_all",
    "gauss_gradient",
    "gauss_gradient_kernel",
    "gradient_error",
    "mse",
    "region_errors",
    "sad",
]

METRIC_NAMES: tuple[str, ...] = ("SAD", "MSE", "Grad", "Conn")
REGION_METRIC_NAMES: tuple[str, ...] = ("MAD", "MAD_all", "SAD_fg", "SAD_bg", "SAD_unknown", "SAD_all")
UNKNOWN = 128
_TRIMAP_VALUES = np.array([0, 128, 255], dtype=np.uint8)
GRAD_SIGMA = 1.4
CONN_STEP_TENTHS = 1  # thresholds 0:0.1:1 as tenths, so that comparisons are exact integer tests


# ---------------------------------------------------------------------------------------------------------------------
# input checks
# ---------------------------------------------------------------------------------------------------------------------
def _check_matte(name: str, array: object) -> np.ndarray:
    if not isinstance(array, np.ndarray):
        raise ValueError(f"{name} must be a numpy.ndarray, got {type(array).__name__}")
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D H×W array, got shape {array.shape}")
    if array.dtype != np.uint8:
        raise ValueError(f"{name} must have dtype uint8 (values 0..255), got {array.dtype}")
    return array


def _check_inputs(pred: object, alpha: object, trimap: object) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate the three maps (2-D, uint8, same shape, trimap in {0,128,255}) and return them."""
    pred = _check_matte("pred", pred)
    alpha = _check_matte("alpha", alpha)
    trimap = _check_matte("trimap", trimap)
    if pred.shape != alpha.shape or pred.shape != trimap.shape:
        raise ValueError(
            f"shape mismatch: pred {pred.shape}, alpha {alpha.shape}, trimap {trimap.shape} must be equal"
        )
    bad = np.setdiff1d(np.unique(trimap), _TRIMAP_VALUES)
    if bad.size:
        shown = ", ".join(str(int(v)) for v in bad[:10]) + (", ..." if bad.size > 10 else "")
        raise ValueError(f"trimap may only hold 0, 128 and 255; found other values: {shown}")
    return pred, alpha, trimap


def _unknown(trimap: np.ndarray) -> np.ndarray:
    return trimap == UNKNOWN


# ---------------------------------------------------------------------------------------------------------------------
# SAD and MSE
# ---------------------------------------------------------------------------------------------------------------------
def sad(pred: np.ndarray, alpha: np.ndarray, trimap: np.ndarray) -> float:
    """Sum of |pred − alpha|/255 over the unknown region, ÷1000 (``compute_sad_loss.m``)."""
    pred, alpha, trimap = _check_inputs(pred, alpha, trimap)
    return _sad(pred, alpha, _unknown(trimap))


def _sad(pred: np.ndarray, alpha: np.ndarray, unknown: np.ndarray) -> float:
    diff = np.abs(pred[unknown].astype(np.int32) - alpha[unknown].astype(np.int32))
    return float(diff.sum(dtype=np.int64)) / 255.0 / 1000.0


def mse(pred: np.ndarray, alpha: np.ndarray, trimap: np.ndarray) -> float:
    """Mean of ((pred − alpha)/255)² over the unknown region (``compute_mse_loss.m``); 0.0 if it is empty."""
    pred, alpha, trimap = _check_inputs(pred, alpha, trimap)
    return _mse(pred, alpha, _unknown(trimap))


def _mse(pred: np.ndarray, alpha: np.ndarray, unknown: np.ndarray) -> float:
    count = int(np.count_nonzero(unknown))
    if count == 0:
        return 0.0
    diff = pred[unknown].astype(np.int64) - alpha[unknown].astype(np.int64)
    return float(np.dot(diff, diff)) / (255.0 * 255.0) / count


# ---------------------------------------------------------------------------------------------------------------------
# Grad
# ---------------------------------------------------------------------------------------------------------------------
def _gauss(x: np.ndarray, sigma: float) -> np.ndarray:
    return np.exp(-(x**2) / (2.0 * sigma**2)) / (sigma * math.sqrt(2.0 * math.pi))


def _gauss_factors(sigma: float) -> tuple[np.ndarray, np.ndarray, float]:
    """1-D factors (g, g') of the separable kernel h_x(i, j) = g(i)·g'(j) / ‖g ⊗ g'‖₂, and that L2 norm."""
    epsilon = 1e-2
    half = int(math.ceil(sigma * math.sqrt(-2.0 * math.log(math.sqrt(2.0 * math.pi) * sigma * epsilon))))
    offsets = np.arange(-half, half + 1, dtype=np.float64)
    g = _gauss(offsets, sigma)
    dg = -offsets * g / sigma**2
    norm = float(np.sqrt(np.sum(g**2) * np.sum(dg**2)))  # ‖outer(g, dg)‖_F = ‖g‖·‖dg‖
    return g, dg, norm


def gauss_gradient_kernel(sigma: float = GRAD_SIGMA) -> np.ndarray:
    """The 2-D x-derivative kernel h_x of MATLAB ``gaussgradient`` (rows: Gaussian, columns: its derivative).

    The half size is ⌈σ·√(−2·ln(√(2π)·σ·0.01))⌉ (4 for σ = 1.4, a 9×9 kernel) and the kernel has unit L2 norm.
    The y kernel is its transpose.
    """
    g, dg, norm = _gauss_factors(sigma)
    return np.outer(g, dg) / norm


def gauss_gradient(image: np.ndarray, sigma: float = GRAD_SIGMA) -> tuple[np.ndarray, np.ndarray]:
    """(gx, gy) = imfilter(image, h_x / h_y, 'replicate', 'conv'), computed separably in float64.

    Replicate padding clamps each axis independently, so filtering the rows then the columns gives exactly the
    2-D convolution with the outer-product kernel.
    """
    g, dg, norm = _gauss_factors(sigma)
    image = np.asarray(image, dtype=np.float64)
    # ndimage.convolve1d is a true convolution (kernel flipped) and mode="nearest" is MATLAB's 'replicate'.
    smooth_rows = ndimage.convolve1d(image, g, axis=0, mode="nearest")
    gx = ndimage.convolve1d(smooth_rows, dg, axis=1, mode="nearest") / norm
    smooth_cols = ndimage.convolve1d(image, g, axis=1, mode="nearest")
    gy = ndimage.convolve1d(smooth_cols, dg, axis=0, mode="nearest") / norm
    return gx, gy


def _mat2gray(matte: np.ndarray) -> np.ndarray:
    """MATLAB ``mat2gray`` with default limits: min-max rescale of the whole image to [0, 1] in float64.

    A constant image is returned as its values clipped to [0, 1] (MATLAB's rule); its gradient is zero either way.
    """
    image = matte.astype(np.float64)
    lo, hi = float(image.min()), float(image.max())
    if hi == lo:
        return np.clip(image, 0.0, 1.0)
    return (image - lo) / (hi - lo)


def gradient_error(pred: np.ndarray, alpha: np.ndarray, trimap: np.ndarray) -> float:
    """Σ over the unknown region of (|∇pred| − |∇alpha|)², ÷1000 (``compute_gradient_loss.m``).

    Each matte is min-max normalised on its own (``mat2gray``), then differentiated with the first-derivative-of-
    Gaussian filters of ``gaussgradient`` (σ = 1.4). Like MATLAB, the magnitudes are rounded to single precision
    before they are compared.
    """
    pred, alpha, trimap = _check_inputs(pred, alpha, trimap)
    return _gradient_error(pred, alpha, _unknown(trimap))


def _gradient_magnitude(matte: np.ndarray) -> np.ndarray:
    gx, gy = gauss_gradient(_mat2gray(matte))
    return np.sqrt(gx * gx + gy * gy).astype(np.float32)


def _gradient_error(pred: np.ndarray, alpha: np.ndarray, unknown: np.ndarray) -> float:
    if not unknown.any():
        return 0.0
    diff = _gradient_magnitude(pred)[unknown].astype(np.float64) - _gradient_magnitude(alpha)[unknown]
    return float(np.dot(diff, diff)) / 1000.0


# ---------------------------------------------------------------------------------------------------------------------
# Conn
# ---------------------------------------------------------------------------------------------------------------------
def _largest_component(mask: np.ndarray) -> np.ndarray | None:
    """The largest 4-connected component of ``mask`` (None if empty), ties broken like MATLAB.

    ``bwconncomp`` numbers components in column-major order of their first pixel and ``max`` returns the first of
    equal sizes, so among equally large components the one whose first pixel comes first in column-major order wins.
    """
    labels, count = ndimage.label(mask)  # default structure = 4-connectivity
    if count == 0:
        return None
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    sizes[0] = 0
    winners = np.flatnonzero(sizes == sizes.max())
    winner = int(winners[0])
    if winners.size > 1:  # rare: resolve the tie in column-major order
        column_major = labels.T.ravel()
        firsts = [int(np.argmax(column_major == w)) for w in winners]
        winner = int(winners[int(np.argmin(firsts))])
    return labels == winner


def connectivity_error(pred: np.ndarray, alpha: np.ndarray, trimap: np.ndarray) -> float:
    """Σ over the unknown region of |φ(pred) − φ(alpha)|, ÷1000 (``compute_connectivity_error.m``, step 0.1).

    For t = 0.1 … 1.0, Ω is the largest 4-connected component of (pred ≥ t) ∧ (alpha ≥ t); every pixel whose level ℓ
    is still unset and that lies outside Ω gets ℓ = t − 0.1. Pixels never dropped get ℓ = 1. With d = matte − ℓ,
    φ = 1 − d·[d ≥ 0.15]. A threshold whose intersection is empty leaves ℓ unchanged (see the module docstring).
    """
    pred, alpha, trimap = _check_inputs(pred, alpha, trimap)
    return _connectivity_error(pred, alpha, _unknown(trimap))


def _connectivity_error(pred: np.ndarray, alpha: np.ndarray, unknown: np.ndarray) -> float:
    if not unknown.any():
        return 0.0
    # v/255 ≥ k/10  ⇔  2·v ≥ 51·k : exact integer comparisons (MATLAB's single-vs-double tests agree on all 0..255).
    pred2 = pred.astype(np.int16) * 2
    alpha2 = alpha.astype(np.int16) * 2
    level_tenths = np.zeros(pred.shape, dtype=np.int8)  # ℓ·10 where set
    unset = np.ones(pred.shape, dtype=bool)  # MATLAB's ℓ == −1
    steps = round(10 / CONN_STEP_TENTHS)
    for k in range(CONN_STEP_TENTHS, steps + 1, CONN_STEP_TENTHS):
        both = (pred2 >= 51 * k) & (alpha2 >= 51 * k)
        omega = _largest_component(both)
        if omega is None:
            break  # empty now means empty for every higher threshold too
        drop = unset & ~omega
        level_tenths[drop] = k - CONN_STEP_TENTHS
        unset &= omega
    level = level_tenths[unknown].astype(np.float64) / 10.0
    level[unset[unknown]] = 1.0
    phi_pred = _phi(pred[unknown].astype(np.float64) / 255.0 - level)
    phi_alpha = _phi(alpha[unknown].astype(np.float64) / 255.0 - level)
    return float(np.abs(phi_pred - phi_alpha).sum()) / 1000.0


def _phi(d: np.ndarray) -> np.ndarray:
    return 1.0 - d * (d >= 0.15)


# ---------------------------------------------------------------------------------------------------------------------
# all four, and dataset means
# ---------------------------------------------------------------------------------------------------------------------
def evaluate(pred: np.ndarray, alpha: np.ndarray, trimap: np.ndarray) -> dict[str, float]:
    """All four Composition-1k metrics of one image: ``{"SAD", "MSE", "Grad", "Conn"}`` in published units."""
    pred, alpha, trimap = _check_inputs(pred, alpha, trimap)
    unknown = _unknown(trimap)
    return {
        "SAD": _sad(pred, alpha, unknown),
        "MSE": _mse(pred, alpha, unknown),
        "Grad": _gradient_error(pred, alpha, unknown),
        "Conn": _connectivity_error(pred, alpha, unknown),
    }


def region_errors(pred: np.ndarray, alpha: np.ndarray, trimap: np.ndarray) -> dict[str, float]:
    """MAD over the unknown region and the whole image, SAD per trimap region and over the whole image (see the
    module docstring for units); MAD over an empty unknown region is 0.0, like MSE."""
    pred, alpha, trimap = _check_inputs(pred, alpha, trimap)
    diff = np.abs(pred.astype(np.int32) - alpha.astype(np.int32))
    sums = {name: int(diff[trimap == value].sum(dtype=np.int64)) for name, value in (("fg", 255), ("bg", 0),
                                                                                     ("unknown", UNKNOWN))}
    total = int(diff.sum(dtype=np.int64))
    unknown_count = int(np.count_nonzero(trimap == UNKNOWN))
    return {
        "MAD": sums["unknown"] / 255.0 / unknown_count if unknown_count else 0.0,
        "MAD_all": total / 255.0 / diff.size,
        "SAD_fg": sums["fg"] / 255.0 / 1000.0,
        "SAD_bg": sums["bg"] / 255.0 / 1000.0,
        "SAD_unknown": sums["unknown"] / 255.0 / 1000.0,
        "SAD_all": total / 255.0 / 1000.0,
    }


def evaluate_all(pred: np.ndarray, alpha: np.ndarray, trimap: np.ndarray) -> dict[str, float]:
    """The four official metrics followed by the region errors: every name in METRIC_NAMES + REGION_METRIC_NAMES."""
    return {**evaluate(pred, alpha, trimap), **region_errors(pred, alpha, trimap)}


class MetricAccumulator:
    """Running means of per-image scores over a dataset (the published tables average per-image numbers)."""

    def __init__(self) -> None:
        self._sums = dict.fromkeys(METRIC_NAMES, 0.0)
        self._count = 0

    @property
    def count(self) -> int:
        """Number of images added so far."""
        return self._count

    def update(self, pred: np.ndarray, alpha: np.ndarray, trimap: np.ndarray) -> dict[str, float]:
        """Evaluate one image, add its scores and return them."""
        scores = evaluate(pred, alpha, trimap)
        self.add(scores)
        return scores

    def add(self, scores: Mapping[str, float]) -> None:
        """Add scores computed elsewhere (e.g. on another worker); all four names are required."""
        missing = [name for name in METRIC_NAMES if name not in scores]
        if missing:
            raise ValueError(f"scores lack {missing}; expected the keys {list(METRIC_NAMES)}")
        values = {name: float(scores[name]) for name in METRIC_NAMES}
        bad = [name for name, value in values.items() if not math.isfinite(value)]
        if bad:
            raise ValueError(f"non-finite scores for {bad}: {values}")
        for name, value in values.items():
            self._sums[name] += value
        self._count += 1

    def mean(self) -> dict[str, float]:
        """Mean of every metric over the images added; raises if none were."""
        if self._count == 0:
            raise ValueError("no images were added to the accumulator")
        return {name: total / self._count for name, total in self._sums.items()}

    def reset(self) -> None:
        """Forget everything added so far."""
        self._sums = dict.fromkeys(METRIC_NAMES, 0.0)
        self._count = 0
