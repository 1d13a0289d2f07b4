"""Choice of the training crop from the trimap (docs/model.md §4.2 step 5), in torch on the batch's device.

The frame handed in is already upscaled (small images are upscaled inside the DALI warp, so one nearest-neighbour
resampling serves the affine and the upscale). The crop is centred on a uniformly random unknown pixel whose row and
column keep the crop inside the frame; with fewer than `min_unknown` such pixels the crop is uniformly random; with no
unknown pixel at all the whole frame is resized (nearest) to the crop size instead.

`crop_from_alpha` makes the same choice from the alpha without eroding the whole frame: the trimap is computed only
over the region of admissible centres and then over the chosen window (each with the erosion's reach around it), which
is exact; the whole frame is eroded only when no admissible centre is unknown (to tell "unknown pixels elsewhere" from
"none at all").
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .trimap import make_trimap, make_trimap_region


@dataclass(frozen=True)
class CropWindow:
    """Maps crop pixel (i, j) to frame pixel (top + i * scale_y, left + j * scale_x) (scale 1 = a plain window)."""

    top: int
    left: int
    scale_y: float = 1.0
    scale_x: float = 1.0

    @property
    def is_window(self) -> bool:
        return self.scale_y == 1.0 and self.scale_x == 1.0

    def apply(self, image: torch.Tensor, crop: int) -> torch.Tensor:
        """Cut the crop out of a H x W (x C) tensor: a slice, or a nearest-neighbour gather for the resize case."""
        if self.is_window:
            return image[self.top:self.top + crop, self.left:self.left + crop]
        h, w = image.shape[:2]
        rows = ((torch.arange(crop, device=image.device) + 0.5) * self.scale_y).long().clamp_(0, h - 1)
        cols = ((torch.arange(crop, device=image.device) + 0.5) * self.scale_x).long().clamp_(0, w - 1)
        return image[rows][:, cols]


def choose_crop(trimap: torch.Tensor, crop: int, min_unknown: int, generator: torch.Generator) -> CropWindow:
    """Draw the crop window for a H x W uint8 trimap (H, W >= crop)."""
    h, w = trimap.shape
    unknown = trimap == 128
    if not bool(unknown.any()):
        return CropWindow(0, 0, h / crop, w / crop)
    half = crop // 2
    valid = unknown[half:h - (crop - half) + 1, half:w - (crop - half) + 1]
    idx = valid.flatten().nonzero().flatten()
    if idx.numel() < min_unknown:
        top = int(torch.randint(0, h - crop + 1, (1,), generator=generator))
        left = int(torch.randint(0, w - crop + 1, (1,), generator=generator))
        return CropWindow(top, left)
    pick = int(idx[int(torch.randint(0, idx.numel(), (1,), generator=generator))])
    row, col = divmod(pick, valid.shape[1])
    return CropWindow(row, col)  # top-left = (row + half) - half


def crop_from_alpha(alpha: torch.Tensor, fg_size: int, bg_size: int, crop: int, min_unknown: int,
                    generator: torch.Generator) -> tuple[CropWindow, torch.Tensor]:
    """(window, crop x crop trimap) for a H x W uint8 alpha (H, W >= crop): the same window, trimap and generator draws
    as `choose_crop(make_trimap(alpha, fg_size, bg_size), ...)` followed by `window.apply(trimap, crop)`."""
    h, w = alpha.shape
    half = crop // 2
    centres = make_trimap_region(alpha, fg_size, bg_size, half, half, h - crop + 1, w - crop + 1)
    idx = (centres == 128).flatten().nonzero().flatten()
    if idx.numel() == 0:  # unknown pixels elsewhere or none at all: decide on the full trimap
        trimap = make_trimap(alpha, fg_size, bg_size)
        win = choose_crop(trimap, crop, min_unknown, generator)
        return win, win.apply(trimap, crop)
    if idx.numel() < min_unknown:
        top = int(torch.randint(0, h - crop + 1, (1,), generator=generator))
        left = int(torch.randint(0, w - crop + 1, (1,), generator=generator))
    else:
        pick = int(idx[int(torch.randint(0, idx.numel(), (1,), generator=generator))])
        top, left = divmod(pick, centres.shape[1])
    return CropWindow(top, left), make_trimap_region(alpha, fg_size, bg_size, top, left, crop, crop)
