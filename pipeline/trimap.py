"""Trimaps from alpha mattes by erosion with elliptical structuring elements, in torch on the alpha's device.

DALI 2.4 has `experimental.erode` only on the GPU and the crop centre must be drawn from the resulting trimap (a
data-dependent choice no DALI operator makes), so trimap generation runs in torch right after the geometry graph. The
loader runs it on the CPU (a GPU loader too: the data-dependent crop draw then never syncs host and device); the code
is device-agnostic.

Recipe (docs/model.md §4.2 step 4): definite foreground = alpha == 255 (alpha >= 1 - 1e-5 in 8 bits), definite
background = alpha == 0; each is eroded with OpenCV's ellipse of size k, as the official code does (k = 1 means no
erosion); trimap = 255 on eroded
foreground, 0 on eroded background, 128 elsewhere. Pixels outside the image count as inside the region (erosion does
not eat in from the border), as with OpenCV's default border for `erode`.
"""
from __future__ import annotations

import functools
import math

import torch


@functools.lru_cache(maxsize=128)
def ellipse_rows(size: int) -> tuple[tuple[int, int, int], ...]:
    """Rows of the size x size elliptical structuring element as (dy, dx_low, dx_high) offsets from its anchor
    (size // 2, size // 2).

    The element is OpenCV's `getStructuringElement(MORPH_ELLIPSE, (size, size))`, the one the official training code
    erodes with: radius r = size // 2; row dy in -r .. size - 1 - r spans dx = round(r * sqrt(1 - dy^2 / r^2)) either
    side of the anchor, clipped to the box. (For even sizes it is not symmetric: the top row is a single pixel and
    there is no matching bottom row.)
    """
    if size < 1:
        raise ValueError(f"structuring element size must be >= 1, got {size}")
    r = size // 2
    rows = []
    for dy in range(-r, size - r):
        dx = round(r * math.sqrt((r * r - dy * dy) / (r * r))) if r else 0   # no ties: r^2 - dy^2 is an integer
        rows.append((dy, max(-dx, -r), min(dx, size - 1 - r)))
    return tuple(rows)


def reach(size: int) -> int:
    """Largest offset of the size x size element from its anchor, in rows or columns: a pixel's erosion depends only
    on pixels at most this far away (anchor size // 2, so offsets run from -(size // 2) to (size - 1) // 2)."""
    return size // 2


def _row_min_runs(mask: torch.Tensor, longest: int) -> dict[int, torch.Tensor]:
    """runs[L][.., x] = AND of mask[.., x : x + L] for powers of two L <= longest (True past the right edge)."""
    runs = {1: mask}
    length = 1
    while length * 2 <= longest:
        prev = runs[length]
        w = prev.shape[-1]
        run = torch.empty_like(prev)
        torch.logical_and(prev[..., : w - length], prev[..., length:], out=run[..., : w - length])  # one pass
        run[..., w - length:] = prev[..., w - length:]                  # past the right edge: AND with True
        runs[length * 2] = run
        length *= 2
    return runs


def erode(mask: torch.Tensor, size: int) -> torch.Tensor:
    """Binary erosion of a H x W bool mask with a size x size ellipse (outside the image counts as True)."""
    if size <= 1:
        return mask.clone()
    rows = ellipse_rows(size)
    pad = reach(size)
    h, w = mask.shape
    padded = torch.ones((h + 2 * pad, w + 2 * pad), dtype=torch.bool, device=mask.device)
    padded[pad:pad + h, pad:pad + w] = mask
    longest = max(hi - lo + 1 for _, lo, hi in rows)
    runs = _row_min_runs(padded, longest)
    horiz: dict[tuple[int, int], torch.Tensor] = {}
    out: torch.Tensor | None = None
    for dy, lo, hi in rows:
        key = (lo, hi)
        if key not in horiz:
            length = hi - lo + 1
            p = 1 << (length.bit_length() - 1)
            run = runs[p]
            # AND over x + lo .. x + hi = two overlapping power-of-two runs
            a = run[:, pad + lo: pad + lo + w]
            b = run[:, pad + hi - p + 1: pad + hi - p + 1 + w]
            horiz[key] = a & b
        row = horiz[key][pad + dy: pad + dy + h]
        if out is None:
            out = row.clone()
        else:
            out &= row
    assert out is not None  # an element has at least one row
    return out


def make_trimap(alpha: torch.Tensor, fg_size: int, bg_size: int) -> torch.Tensor:
    """uint8 trimap (0/128/255) from a H x W uint8 alpha; erosion sizes for definite fg and bg regions."""
    fg = erode(alpha == 255, fg_size)
    bg = erode(alpha == 0, bg_size)
    # 128 + 127 * fg - 128 * bg, in uint8 arithmetic without masked writes
    return (fg.to(torch.uint8) * 127 + 128) - bg.to(torch.uint8) * 128


def make_trimap_region(alpha: torch.Tensor, fg_size: int, bg_size: int, top: int, left: int, height: int,
                       width: int) -> torch.Tensor:
    """`make_trimap(alpha, fg_size, bg_size)[top:top + height, left:left + width]`, computed from that window of the
    alpha plus the elements' reach around it (clipped at the image border, where erosion pads with "inside" as on the
    full frame), so it is exact at a fraction of the full frame's cost."""
    h, w = alpha.shape
    m = max(reach(fg_size), reach(bg_size))
    t0, l0 = max(0, top - m), max(0, left - m)
    t1, l1 = min(h, top + height + m), min(w, left + width + m)
    tri = make_trimap(alpha[t0:t1, l0:l1], fg_size, bg_size)
    return tri[top - t0:top - t0 + height, left - l0:left - l0 + width]
