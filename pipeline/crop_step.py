"""The training loader's per-batch crop step: combined alphas, crop windows, trimaps and foreground weights.

Pure torch on the CPU and a pure function of its inputs (one generator per batch, seeded from the batch plan), so it
gives the same bytes in the loader's own thread and in a crop worker process (`crop_pool.CropPool`). The inputs, the
geometry graph's full-frame uint8 alphas, are only read; every output is a new tensor, so the caller may hand DALI's
buffers in without copying them.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch

from .combine import combined_alpha, foreground_weights
from .crop import CropWindow, choose_crop, crop_from_alpha


@contextlib.contextmanager
def single_torch_thread(device: torch.device) -> Iterator[None]:
    """Run the per-sample torch step on one CPU thread: DALI's worker threads already occupy the cores, and
    torch's OpenMP pool competing with them made the trimap step ~50x slower on the 2-core box (4 ms -> 240 ms)."""
    if device.type != "cpu":
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@dataclass
class CropBatch:
    """What the crop step hands the finish graph for one batch of N samples, M of them combined."""

    windows: list[CropWindow]
    trimaps: torch.Tensor   # N x crop x crop uint8 (0 / 128 / 255)
    alphas: torch.Tensor    # N x crop x crop uint8, the combined alpha where a second foreground was combined
    weights: torch.Tensor   # M x 2 x crop x crop float32: (w1, w2) of each combined sample, in batch order
    release: Callable[[], None] | None = None   # from a crop worker: call once the tensors are no longer read


def crop_batch(frames1: Sequence[torch.Tensor], frames2: Sequence[torch.Tensor], combine: Sequence[bool],
               erosion: Sequence[tuple[int, int]], crop: int, min_unknown: int, seed: int,
               composites: bool) -> CropBatch:
    """The crop step of one batch from its H x W uint8 frames (frames2: the second foreground's alpha, or for
    composites the stored trimap warped like the alpha). Samples draw from one generator seeded with `seed`, in order."""
    gen = torch.Generator().manual_seed(seed)
    windows, trimaps, alphas, weights = [], [], [], []
    for a1, a2, comb, sizes in zip(frames1, frames2, combine, erosion):
        if composites:
            alpha = a1
            win = choose_crop(a2, crop, min_unknown, gen)
            trimaps.append(win.apply(a2, crop))
        else:
            alpha = combined_alpha(a1, a2) if comb else a1
            win, trimap = crop_from_alpha(alpha, *sizes, crop, min_unknown, gen)
            trimaps.append(trimap)
        alpha_c = win.apply(alpha, crop)
        alphas.append(alpha_c)
        if comb:
            weights.append(torch.stack(foreground_weights(win.apply(a1, crop), win.apply(a2, crop), alpha_c)))
        windows.append(win)
    empty = torch.empty((0, 2, crop, crop), dtype=torch.float32)
    return CropBatch(windows, torch.stack(trimaps), torch.stack(alphas), torch.stack(weights) if weights else empty)
