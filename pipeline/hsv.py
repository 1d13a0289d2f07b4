"""The colour jitter's HSV change as plain DALI arithmetic, for graphs whose jitter amounts live on the GPU.

Why: DALI's `hsv` takes its hue/saturation/value amounts as operator arguments, which live on the CPU; on a GPU
loader the amounts are computed on the device (means of the cropped foreground), so handing them to `hsv` copies them
to the host and waits for the device inside every run. `hsv` is a linear map of the RGB vector (DALI's docs: projected
on the grey axis, rotated by the hue, scaled by saturation and value), in YIQ terms

    M(h, s, v) = v · T⁻¹ · diag(1, s·R(−h)) · T,   T = RGB → YIQ,  R = a rotation of the (I, Q) plane,

so the same map is written here as one arithmetic expression per output channel whose coefficients are per-sample
scalars, and nothing leaves the device. It reproduces `hsv`'s float output to within 5e-5 on the 0..255 scale, so
uint8 results differ by at most one level (tests compare the two on the CPU).
"""
from __future__ import annotations

import numpy as np
from nvidia.dali import fn, math as dmath, types

_RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.321], [0.211, -0.523, 0.311]])
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ)
# M = v·LUMA + v·s·cos(h)·CHROMA + v·s·sin(h)·TURN  (h in radians; the sign of TURN matches DALI's hue direction)
_LUMA = _YIQ_TO_RGB @ np.diag([1.0, 0.0, 0.0]) @ _RGB_TO_YIQ
_CHROMA = _YIQ_TO_RGB @ np.diag([0.0, 1.0, 1.0]) @ _RGB_TO_YIQ
_TURN = _YIQ_TO_RGB @ np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]]) @ _RGB_TO_YIQ


def hsv_matrix(hue_degrees: float, saturation: float, value: float) -> np.ndarray:
    """The 3 x 3 RGB matrix of the change (NumPy), for tests and for reading what the graph computes."""
    h = np.deg2rad(hue_degrees)
    return value * (_LUMA + saturation * (np.cos(h) * _CHROMA + np.sin(h) * _TURN))


def hsv_by_arithmetic(image, hue_degrees, saturation, value):
    """`fn.hsv(image, hue=..., saturation=..., value=...)` (uint8 HWC RGB in and out) as DALI arithmetic; the three
    amounts are per-sample scalar DataNodes on the image's device (or constants)."""
    h = hue_degrees * (np.pi / 180.0)
    a = value
    b = value * saturation * dmath.cos(h)
    d = value * saturation * dmath.sin(h)
    channels = [image[:, :, k] for k in range(3)]
    out = []
    for i in range(3):
        terms = [(a * float(_LUMA[i, k]) + b * float(_CHROMA[i, k]) + d * float(_TURN[i, k])) * channels[k]
                 for k in range(3)]
        out.append(terms[0] + terms[1] + terms[2])
    return fn.cast(fn.stack(*out, axis=2, axis_name="C"), dtype=types.UINT8)  # rounds and saturates, as `hsv`
