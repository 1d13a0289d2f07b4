"""Foreground estimation for datasets that ship only the image and its alpha (AM-2k, P3M-10k, PPM-100, ...).

Re-compositing needs the foreground colours F of I = alpha F + (1 - alpha) B. Using the image itself as F bleeds
the original background into every soft pixel of a new composite, so F is estimated at shard time with the
multi-level method of Germer et al. (`pymatting.estimate_foreground_ml`) and recorded as estimated in each
sample's meta.json and in the manifest.
"""
from __future__ import annotations

import logging
from importlib.metadata import version

import numpy as np

log = logging.getLogger(__name__)

#: what meta.json ("fg_estimated") and manifest.json ("foreground_estimation") record about the method
METHOD = "multi-level (Germer et al. 2020), pymatting.estimate_foreground_ml"


def method_record() -> dict:
    """The manifest's description of how foregrounds were estimated (method + library version)."""
    return {"method": METHOD, "pymatting": version("pymatting")}


def estimate_foreground(image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """uint8 HxWx3 foreground from a uint8 HxWx3 image and uint8 HxW alpha (pymatting's default parameters)."""
    return estimate_layers(image, alpha)[0]


def estimate_layers(image: np.ndarray, alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (foreground, background) of a photo: the background too, so that a photo trained on as it is (photo-*
    shards) has the F and B its composition loss needs (F is the same as without the background)."""
    from pymatting import estimate_foreground_ml  # numba compiles on first use: imported only when needed

    if image.shape[:2] != alpha.shape:
        raise ValueError(f"image is {image.shape[1]}x{image.shape[0]} but alpha is {alpha.shape[1]}x{alpha.shape[0]}")
    fg, bg = estimate_foreground_ml(image.astype(np.float64) / 255.0, alpha.astype(np.float64) / 255.0,
                                    return_background=True)
    return tuple(np.clip(np.rint(np.asarray(x) * 255.0), 0, 255).astype(np.uint8) for x in (fg, bg))


def recomposite_error(image: np.ndarray, alpha: np.ndarray, fg: np.ndarray, bg: np.ndarray) -> float:
    """Mean |alpha F + (1 - alpha) B - I| on [0, 1] over the soft pixels (0 < alpha < 255), where the estimate
    matters: how closely foreground `fg` over background `bg` re-composites to `image` (all uint8)."""
    a = alpha.astype(np.float64)[..., None] / 255.0
    soft = (alpha > 0) & (alpha < 255)
    if not soft.any():
        return 0.0
    rec = a * fg.astype(np.float64) + (1 - a) * bg.astype(np.float64)
    return float(np.abs(rec - image.astype(np.float64))[soft].mean() / 255.0)
