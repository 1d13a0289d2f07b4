"""Trimaps for users: from an alpha matte or from a coarse binary mask, with a fixed or an object-scaled band.

Shared by `python -m data_prep trimap` and `python -m jobs predict --mask` (jobs may import data_prep; this module
imports neither model/ nor jobs/), so a trimap made by hand and one made on the fly are the same trimap.

Morphology: known regions are eroded by a disk of radius r (OpenCV elliptical kernel, (2r+1)×(2r+1)); the image
border does not erode them (a subject cut by the frame stays foreground up to the frame).

* alpha mode: foreground = erode(alpha == 255), background = erode(alpha == 0), everything else unknown, so every
  0 < alpha < 255 pixel is unknown and the band reaches r pixels into both solid regions;
* mask mode: foreground = erode(mask), background = erode(not mask): an unknown band of 2r + 1 pixels centred on
  the mask boundary, for masks that are only roughly right (segmentation output, a hand-drawn blob).

Band radius: ``radius`` pixels when given; otherwise ``max(min_radius, round(fraction · √A))`` where A is the
foreground area in pixels (alpha mode: Σ alpha / 255, the soft area; mask mode: the mask's pixel count). √A is the
side of a square of the object's area, so the band is the same fraction of the object at any resolution (the
default 0.04 gives 10 px for a 250×250-pixel object, 40 px for a 1000×1000 one).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import cv2
import numpy as np

__all__ = [
    "DEFAULT_FRACTION",
    "DEFAULT_MIN_RADIUS",
    "BandRadius",
    "MadeTrimap",
    "TrimapError",
    "binarize_mask",
    "read_trimap_values",
    "scaled_radius",
    "trimap_from_alpha",
    "trimap_from_mask",
    "trimap_from_regions",
]

DEFAULT_FRACTION = 0.04
DEFAULT_MIN_RADIUS = 3
MASK_DRIFT = 16          # lossy (JPEG) masks: values this close to 0 or 255 count as 0 or 255
MASK_MAX_ODD = 0.05      # more pixels than this in between and the file is not a binary mask
TRIMAP_DRIFT = 16        # lossy (JPEG) trimaps: values this close to 0/128/255 are snapped to them
TRIMAP_MAX_ODD = 0.05    # more pixels than this farther off and the file is refused as not a trimap


class TrimapError(ValueError):
    """An input that cannot give a trimap (e.g. a 'mask' that is really a soft matte); the caller names the file."""


@dataclass(frozen=True)
class BandRadius:
    """How wide the unknown band is: a fixed ``radius`` in pixels, or ``fraction`` of √(foreground area), at least
    ``min_radius``. ``describe`` says which, for logs."""

    radius: int | None = None
    fraction: float = DEFAULT_FRACTION
    min_radius: int = DEFAULT_MIN_RADIUS

    def __post_init__(self) -> None:
        if self.radius is not None and self.radius < 0:
            raise ValueError(f"radius must be >= 0, got {self.radius}")
        if not self.fraction > 0 or not math.isfinite(self.fraction):
            raise ValueError(f"fraction must be a positive number, got {self.fraction}")
        if self.min_radius < 0:
            raise ValueError(f"min_radius must be >= 0, got {self.min_radius}")

    def resolve(self, area: float) -> int:
        """The radius in pixels for a foreground of ``area`` pixels."""
        return self.radius if self.radius is not None else scaled_radius(area, self.fraction, self.min_radius)

    def describe(self, area: float) -> str:
        r = self.resolve(area)
        if self.radius is not None:
            return f"radius {r} px (fixed)"
        return (f"radius {r} px = max({self.min_radius}, round({self.fraction:g} * sqrt({area:.0f} px foreground "
                f"area)))")


class MadeTrimap(NamedTuple):
    """A trimap with the band radius used and a one-line account of how (for logs)."""

    trimap: np.ndarray
    radius: int
    how: str


def scaled_radius(area: float, fraction: float = DEFAULT_FRACTION, min_radius: int = DEFAULT_MIN_RADIUS) -> int:
    """max(min_radius, round(fraction · √area)): a band proportional to the object's linear size."""
    return max(int(min_radius), int(round(fraction * math.sqrt(max(float(area), 0.0)))))


def _erode(region: np.ndarray, radius: int) -> np.ndarray:
    if radius == 0:
        return region.astype(bool)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    out = cv2.erode(region.astype(np.uint8), kernel, borderType=cv2.BORDER_CONSTANT, borderValue=1)
    return out.astype(bool)


def trimap_from_regions(foreground: np.ndarray, background: np.ndarray, radius: int) -> np.ndarray:
    """uint8 trimap (exactly 0/128/255): 255 on eroded ``foreground``, 0 on eroded ``background``, 128 elsewhere."""
    if foreground.shape != background.shape or foreground.ndim != 2:
        raise ValueError(f"regions must be two H×W arrays of one shape, got {foreground.shape} and {background.shape}")
    trimap = np.full(foreground.shape, 128, np.uint8)
    trimap[_erode(foreground, radius)] = 255
    trimap[_erode(background, radius)] = 0
    return trimap


def _check_gray(name: str, array: np.ndarray) -> np.ndarray:
    if not isinstance(array, np.ndarray) or array.ndim != 2 or array.dtype != np.uint8 or array.size == 0:
        shape = getattr(array, "shape", None)
        raise TrimapError(f"{name} must be a non-empty H×W uint8 array, got {type(array).__name__} {shape}")
    return array


def trimap_from_alpha(alpha: np.ndarray, band: BandRadius | int | None = None) -> MadeTrimap:
    """The trimap of an H×W uint8 alpha matte; ``band`` an int is a fixed radius, None the default scaled one."""
    alpha = _check_gray("alpha", alpha)
    band = _band(band)
    area = float(alpha.sum(dtype=np.int64)) / 255.0
    radius = band.resolve(area)
    return MadeTrimap(trimap_from_regions(alpha == 255, alpha == 0, radius), radius, band.describe(area))


def read_trimap_values(trimap: np.ndarray) -> tuple[np.ndarray, str | None]:
    """A stored trimap's values as exactly 0/128/255, and a note on the encoding when it was not already that (for
    the caller's log). Encodings in common use are each recognised explicitly: 0/128/255, 0/127/255, label-coded
    0/1/2 (background / unknown / foreground), and 0/128/255 stored lossily (values within ±16 snapped; a few
    resampled pixels farther off snap to the nearest). Anything else (a 0/1 mask, an alpha matte, a photo) raises
    TrimapError saying what was seen. The one rule for trimap files: data_prep's released trimaps and the trimaps
    given to `jobs predict`/`evaluate` both go through it."""
    values = np.unique(trimap)
    seen = set(values.tolist())
    if seen <= {0, 1, 2} and seen != {0}:
        if 2 not in seen:
            raise TrimapError(f"only the values {sorted(seen)}: a binary 0/1 mask, or a label trimap without "
                              "foreground? Give a 0/128/255 (or 0/1/2 labelled) trimap")
        return np.array([0, 128, 255], np.uint8)[trimap], "label-coded 0/1/2: read as background/unknown/foreground"
    if seen <= {0, 127, 128, 255}:
        out = trimap.astype(np.uint8, copy=True)
        out[out == 127] = 128
        return out, None
    nearest = np.array([0, 128, 255], np.int16)
    distance = np.abs(trimap.astype(np.int16)[..., None] - nearest)
    odd = float(np.mean(distance.min(axis=-1) > TRIMAP_DRIFT))
    if odd > TRIMAP_MAX_ODD:
        sample = ", ".join(str(v) for v in values[:: max(1, len(values) // 8)][:8])
        raise TrimapError(f"{len(values)} distinct values ({sample}, ...) and {odd:.0%} of pixels are not near "
                          "0/128/255: this looks like an alpha matte or a photo, not a trimap")
    return (nearest.astype(np.uint8)[distance.argmin(axis=-1)],
            f"{len(values)} values off 0/128/255 (lossy file?): snapped to the nearest")


def binarize_mask(mask: np.ndarray) -> np.ndarray:
    """A coarse mask as bool: 0/1 label masks (> 0), 0/255 masks (≥ 128), lossy ones within ±16 of 0 and 255.
    A map with more than 5 % of its pixels in between is refused: it is a soft matte or a photo, and thresholding
    it would silently move the band."""
    mask = _check_gray("mask", mask)
    if int(mask.max()) <= 1:
        return mask > 0
    values = set(np.unique(mask).tolist())
    if values <= {0, 127, 128, 255} and values & {127, 128}:
        raise TrimapError("holds only 0, 128 and 255: this is a trimap already, not a binary mask")
    odd = float(np.mean((mask > MASK_DRIFT) & (mask < 255 - MASK_DRIFT)))
    if odd > MASK_MAX_ODD:
        raise TrimapError(f"{odd:.0%} of the pixels are neither near 0 nor near 255: a soft alpha matte or a photo, "
                          "not a binary mask (make a trimap from an alpha matte with the alpha mode instead)")
    return mask >= 128


def trimap_from_mask(mask: np.ndarray, band: BandRadius | int | None = None) -> MadeTrimap:
    """The trimap of a coarse H×W uint8 binary mask: an unknown band of 2r + 1 px on the mask boundary."""
    binary = binarize_mask(mask)
    band = _band(band)
    area = float(np.count_nonzero(binary))
    radius = band.resolve(area)
    return MadeTrimap(trimap_from_regions(binary, ~binary, radius), radius, band.describe(area))


def _band(band: BandRadius | int | None) -> BandRadius:
    if band is None:
        return BandRadius()
    if isinstance(band, BandRadius):
        return band
    return BandRadius(radius=int(band))
