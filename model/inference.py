"""Full-image inference: one RGB image and its trimap in, one uint8 alpha matte out (docs/model.md §5.1).

Recipe, as in the official ``test.py``: reflect-pad bottom/right to a multiple of 16 (``pad="zero"`` instead pads the
network input with zeros, i.e. the ImageNet-mean colour and trimap 0), ImageNet-normalise the RGB,
append trimap/255 as the 4th channel, run the net in eval mode without gradients, crop, clip to [0, 1], ×255, copy
the known trimap pixels (0 and 255). Difference: the official code saves the 8-bit PNG by **truncation**; here the
matte is **rounded** to the nearest integer (``np.rint``), which is unbiased (truncation lowers every unknown pixel by
0.5 units on average).

Large images: the network keeps several full-resolution 64-channel maps alive, so memory grows linearly with the
pixel count (see benchmarks/RESULTS.md, "inference"). Above ``max_pixels`` (of the padded image) the image
is processed in overlapping tiles whose outputs are blended (see :func:`plan_tiles` and :func:`tile_weights`), which
bounds the peak memory by the tile size. Tiling is approximate for A2U: its kernel generators pool their input
globally (adaptive average pooling to k_e×k_e and global average pooling for the projections), normalise with
per-sample GroupNorm statistics, and the ASPP has an image-pooling branch, so a tile sees different global context
than the whole image. Tiled and untiled outputs therefore differ slightly even far from tile borders (measured in
benchmarks/RESULTS.md); with a purely local network they are identical. Tiling is logged at INFO level.

Test-time augmentation (``tta``): ``"flip"`` averages the net's output on the input and on its horizontal mirror
(mirrored back); ``"d4"`` averages all 8 symmetries of the square (4 rotations by 90°, each with and without the
mirror). The transforms act on the padded network input (of each tile), whose sides stay multiples of 16 under
rotation, and the outputs are averaged in float64, so a net that commutes with the transforms gives exactly the
un-augmented output. Cost: 2× and 8× the net's time.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "PAD_MODES",
    "TTA_MODES",
    "DEFAULT_TILE_OVERLAP",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "STRIDE",
    "Tile",
    "alpha_from_raw",
    "plan_tiles",
    "predict_alpha",
    "predict_raw",
    "prepare_input",
    "tile_weights",
]

logger = logging.getLogger(__name__)

STRIDE = 16  # the net downsamples 4× by 2
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Untiled CPU inference costs ≈ 1.75 KiB per pixel (7.7 GB peak RSS at 2048², RESULTS.md): 2048² keeps one call
# well inside 24 GB; a 4096² image then runs as 9 tiles of 1536² (4.9 GB peak).
DEFAULT_MAX_PIXELS = 2048 * 2048
DEFAULT_TILE_OVERLAP = 256
_TRIMAP_VALUES = np.array([0, 128, 255], dtype=np.uint8)
PAD_MODES: tuple[str, ...] = ("reflect", "zero")
TTA_MODES: tuple[str, ...] = ("none", "flip", "d4")


@dataclass(frozen=True)
class Tile:
    """One tile of the padded image: rows [y, y+height), columns [x, x+width)."""

    y: int
    x: int
    height: int
    width: int


# ---------------------------------------------------------------------------------------------------------------------
# input preparation
# ---------------------------------------------------------------------------------------------------------------------
def _check_inputs(image: object, trimap: object) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(image, np.ndarray):
        raise ValueError(f"image must be a numpy.ndarray, got {type(image).__name__}")
    if not isinstance(trimap, np.ndarray):
        raise ValueError(f"trimap must be a numpy.ndarray, got {type(trimap).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be H×W×3 (RGB), got shape {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"image must have dtype uint8, got {image.dtype}")
    if trimap.ndim != 2:
        raise ValueError(f"trimap must be a 2-D H×W array, got shape {trimap.shape}")
    if trimap.dtype != np.uint8:
        raise ValueError(f"trimap must have dtype uint8, got {trimap.dtype}")
    if trimap.shape != image.shape[:2]:
        raise ValueError(f"trimap shape {trimap.shape} does not match image size {image.shape[:2]}")
    if trimap.size == 0:
        raise ValueError(f"image is empty: shape {image.shape}")
    bad = np.setdiff1d(np.unique(trimap), _TRIMAP_VALUES)
    if bad.size:
        shown = ", ".join(str(int(v)) for v in bad[:10]) + (", ..." if bad.size > 10 else "")
        raise ValueError(f"trimap may only hold 0, 128 and 255; found other values: {shown}")
    return image, trimap


def _padded_size(size: int) -> int:
    return -(-size // STRIDE) * STRIDE


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    return value


def prepare_input(image: np.ndarray, trimap: np.ndarray, pad: str = "reflect") -> torch.Tensor:
    """The net's 1×4×H'×W' float32 CPU input: padded bottom/right to multiples of 16, ImageNet-normalised RGB +
    trimap/255.

    ``pad="reflect"`` (the official recipe) mirrors the image into the margin; it is done on the uint8 arrays before
    the (per-pixel) normalisation, which gives the same numbers as padding the normalised tensor, and NumPy's
    reflect mode also handles images smaller than the pad (repeated reflection). ``pad="zero"`` leaves the margin
    of the network input at 0: the ImageNet-mean colour with trimap 0 (background).
    """
    image, trimap = _check_inputs(image, trimap)
    _check_choice("pad", pad, PAD_MODES)
    height, width = trimap.shape
    margins = ((0, _padded_size(height) - height), (0, _padded_size(width) - width))
    if pad == "reflect":
        image = np.pad(image, margins + ((0, 0),), mode="reflect")  # a single row/column reflects onto itself
        trimap = np.pad(trimap, margins, mode="reflect")
    else:  # torch refuses read-only arrays (e.g. np.asarray of a PIL image); the uint8 copy is small
        image, trimap = np.array(image), np.array(trimap)
    x = torch.zeros((1, 4, _padded_size(height), _padded_size(width)), dtype=torch.float32)
    rows, cols = slice(0, image.shape[0]), slice(0, image.shape[1])
    rgb = torch.from_numpy(image).permute(2, 0, 1)
    for c in range(3):  # channel by channel keeps the temporary memory at one channel
        x[0, c, rows, cols] = rgb[c].to(torch.float32).div_(255.0).sub_(IMAGENET_MEAN[c]).div_(IMAGENET_STD[c])
    x[0, 3, rows, cols] = torch.from_numpy(trimap).to(torch.float32).div_(255.0)
    return x


# ---------------------------------------------------------------------------------------------------------------------
# tiling
# ---------------------------------------------------------------------------------------------------------------------
def _axis_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Tile starts along one axis: multiples of 16, evenly spread, first at 0, last at length − tile, and every
    pair of neighbours overlapping by at least ``overlap``."""
    if tile >= length:
        return [0]
    count = max(2, math.ceil((length - overlap) / (tile - overlap)))
    while True:
        span = length - tile
        starts = [STRIDE * round(i * span / (count - 1) / STRIDE) for i in range(count)]
        if all(prev + tile - nxt >= overlap for prev, nxt in zip(starts, starts[1:])):
            return starts
        count += 1


def _shrink(length: int, tile: int, overlap: int) -> int:
    if tile >= length:
        return length
    count = math.ceil((length - overlap) / (tile - overlap))
    return min(tile, _padded_size(math.ceil((length + (count - 1) * overlap) / count)))


def plan_tiles(height: int, width: int, max_pixels: int, overlap: int = DEFAULT_TILE_OVERLAP) -> list[Tile]:
    """Tiles covering a padded ``height``×``width`` image with at most ``max_pixels`` pixels each.

    A single tile (the whole image) when it fits. Otherwise tiles are as square as the budget allows, sides
    multiples of 16, aligned to the 16-pixel grid of the whole image (so their downsampling grids coincide), and
    neighbours overlap by at least ``overlap`` pixels.
    """
    if height % STRIDE or width % STRIDE:
        raise ValueError(f"padded size {height}×{width} must be a multiple of {STRIDE}")
    if overlap < 0 or overlap % STRIDE:
        raise ValueError(f"overlap must be a non-negative multiple of {STRIDE}, got {overlap}")
    if height * width <= max_pixels:
        return [Tile(0, 0, height, width)]
    side = int(math.isqrt(max_pixels)) // STRIDE * STRIDE
    tile_h = min(height, side)
    tile_w = min(width, max_pixels // tile_h // STRIDE * STRIDE)
    for name, tile, length in (("height", tile_h, height), ("width", tile_w, width)):
        if tile < length and tile < overlap + STRIDE:
            raise ValueError(
                f"max_pixels={max_pixels} gives tile {name} {tile}, too small for overlap {overlap}: "
                f"need at least {overlap + STRIDE} (raise max_pixels or lower the overlap)"
            )
    # Shrink each side to the smallest multiple of 16 that still covers the axis with the same number of tiles
    # (e.g. 4096 px with 2048-px tiles and overlap 256 needs 3 tiles, which can be 1536 px instead of 2048).
    tile_h = _shrink(height, tile_h, overlap)
    tile_w = _shrink(width, tile_w, overlap)
    return [
        Tile(y, x, tile_h, tile_w)
        for y in _axis_starts(height, tile_h, overlap)
        for x in _axis_starts(width, tile_w, overlap)
    ]


def _axis_weights(start: int, size: int, length: int, overlap: int) -> np.ndarray:
    """1-D blending weight of a tile: 1 inside; towards an edge shared with a neighbour, 0 over the outer quarter of
    the overlap (the output least trustworthy there) and a linear ramp over the middle half. Image borders keep 1."""
    weights = np.ones(size, dtype=np.float32)
    if overlap == 0:
        return weights
    discard = overlap // 4
    ramp = max(overlap - 2 * discard, 1)
    distance = np.arange(size, dtype=np.float32) + 0.5  # from the low edge, pixel centres
    if start > 0:
        weights = np.minimum(weights, np.clip((distance - discard) / ramp, 0.0, 1.0))
    if start + size < length:
        weights = np.minimum(weights, np.clip((distance[::-1] - discard) / ramp, 0.0, 1.0))
    return weights


def tile_weights(tile: Tile, height: int, width: int, overlap: int) -> np.ndarray:
    """Blending weights of one tile (height×width of the tile), the product of its row and column weights.

    With neighbours overlapping by ≥ ``overlap`` every pixel gets a positive total weight, and no pixel within
    ``overlap // 4`` of an inner tile edge contributes: a network whose receptive field radius is at most that gives
    exactly the untiled result.
    """
    wy = _axis_weights(tile.y, tile.height, height, overlap)
    wx = _axis_weights(tile.x, tile.width, width, overlap)
    return np.outer(wy, wx)


# ---------------------------------------------------------------------------------------------------------------------
# running the net
# ---------------------------------------------------------------------------------------------------------------------
def _net_device_dtype(net: nn.Module) -> tuple[torch.device, torch.dtype]:
    for tensor in list(net.parameters()) + list(net.buffers()):
        if tensor.is_floating_point():
            return tensor.device, tensor.dtype
    return torch.device("cpu"), torch.float32


def _run_once(net: nn.Module, x: torch.Tensor, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    out = net(x.to(device=device, dtype=dtype))
    expected = (1, 1, x.shape[2], x.shape[3])
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != expected:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"the net must map N×4×H×W to N×1×H×W: input {tuple(x.shape)} gave {shape}")
    return out[0, 0].to(device="cpu", dtype=torch.float32)


def _symmetries(tta: str) -> list[tuple[int, bool]]:
    """(quarter turns, mirrored) of each transform: identity only, + the mirror, or the 8 of the dihedral group."""
    if tta == "none":
        return [(0, False)]
    if tta == "flip":
        return [(0, False), (0, True)]
    return [(k, mirror) for k in range(4) for mirror in (False, True)]


def _run(net: nn.Module, x: torch.Tensor, device: torch.device, dtype: torch.dtype, tta: str = "none") -> np.ndarray:
    """The net's H×W output for a 1×4×H×W input, averaged over the ``tta`` transforms (each undone on its output)."""
    transforms = _symmetries(tta)
    if len(transforms) == 1:
        return _run_once(net, x, device, dtype).numpy()
    total = torch.zeros(x.shape[2:], dtype=torch.float64)
    for quarter_turns, mirror in transforms:
        t = torch.flip(x, dims=(3,)) if mirror else x
        t = torch.rot90(t, quarter_turns, dims=(2, 3)).contiguous()
        out = torch.rot90(_run_once(net, t, device, dtype), -quarter_turns)
        total += torch.flip(out, dims=(1,)) if mirror else out
    # float64 sums of ≤ 8 float32 values are exact, and ÷ 2 or ÷ 8 is exact: equal outputs average to themselves
    return (total / len(transforms)).to(torch.float32).numpy()


def predict_raw(
    net: nn.Module,
    image: np.ndarray,
    trimap: np.ndarray,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    overlap: int = DEFAULT_TILE_OVERLAP,
    tta: str = "none",
    pad: str = "reflect",
) -> np.ndarray:
    """The net's raw H×W float32 output (cropped, not clipped), tiled when the padded image exceeds ``max_pixels``,
    averaged over the test-time augmentations ``tta`` (none | flip | d4) of each tile; ``pad`` is reflect | zero.

    Runs in eval mode under ``torch.no_grad()`` on the device and dtype of the net's parameters; the net's training
    flag is restored afterwards.
    """
    _check_choice("tta", tta, TTA_MODES)
    x = prepare_input(image, trimap, pad)
    height, width = trimap.shape
    padded_h, padded_w = x.shape[2], x.shape[3]
    tiles = plan_tiles(padded_h, padded_w, max_pixels, overlap)
    device, dtype = _net_device_dtype(net)
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            if len(tiles) == 1:
                raw = _run(net, x, device, dtype, tta)
            else:
                logger.info(
                    "tiled inference: %d×%d image (padded %d×%d) above max_pixels=%d -> %d tiles of %d×%d, overlap %d",
                    height, width, padded_h, padded_w, max_pixels, len(tiles), tiles[0].height, tiles[0].width,
                    overlap,
                )
                total = np.zeros((padded_h, padded_w), dtype=np.float32)
                weight_sum = np.zeros((padded_h, padded_w), dtype=np.float32)
                for tile in tiles:
                    rows = slice(tile.y, tile.y + tile.height)
                    cols = slice(tile.x, tile.x + tile.width)
                    out = _run(net, x[:, :, rows, cols].contiguous(), device, dtype, tta)
                    weights = tile_weights(tile, padded_h, padded_w, overlap)
                    total[rows, cols] += out * weights
                    weight_sum[rows, cols] += weights
                raw = total / weight_sum
    finally:
        net.train(was_training)
    return np.ascontiguousarray(raw[:height, :width])


def predict_alpha(
    net: nn.Module,
    image: np.ndarray,
    trimap: np.ndarray,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    overlap: int = DEFAULT_TILE_OVERLAP,
    tta: str = "none",
    pad: str = "reflect",
) -> np.ndarray:
    """Alpha matte (H×W uint8) of an H×W×3 uint8 RGB image with its H×W uint8 trimap (values 0/128/255).

    Clips the raw output to [0, 1], scales by 255, copies the known trimap pixels and rounds to nearest (the official
    code truncates). Images whose padded size exceeds ``max_pixels`` are tiled, ``tta`` and ``pad`` are those of
    :func:`predict_raw` (see the module docstring).
    """
    raw = predict_raw(net, image, trimap, max_pixels=max_pixels, overlap=overlap, tta=tta, pad=pad)
    return alpha_from_raw(raw, trimap)


def alpha_from_raw(raw: np.ndarray, trimap: np.ndarray) -> np.ndarray:
    """The uint8 matte of a raw H×W output: clipped to [0, 1], ×255, rounded to nearest, known trimap pixels
    copied (the last step of :func:`predict_alpha`, for callers that also need the raw output)."""
    alpha = np.rint(np.clip(raw, 0.0, 1.0) * 255.0)
    known = trimap != 128
    alpha[known] = trimap[known]
    return alpha.astype(np.uint8)
