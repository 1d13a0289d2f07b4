"""Image file I/O for evaluate/predict and the per-epoch PNG grid (image | trimap | prediction | truth)."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
from PIL import Image

from data_prep.images import BadInputError, load_alpha, load_rgb
from formats.images import IMAGE_SUFFIXES  # noqa: F401 - re-exported for evaluate/predict
from jobs.errors import JobError

log = logging.getLogger(__name__)


def read_rgb(path: str | Path) -> np.ndarray:
    """H×W×3 uint8 RGB through data_prep's reader (the one image reader: 16-bit, palette, grey and RGBA handled the
    same way when preparing data and when predicting)."""
    try:
        return load_rgb(Path(path))
    except BadInputError as exc:
        raise JobError(f"cannot read image {exc}") from exc


def read_gray(path: str | Path) -> np.ndarray:
    """H×W uint8 trimap or alpha through data_prep's alpha reader (16-bit scaled, grey RGB accepted, colour refused)."""
    try:
        return load_alpha(Path(path))
    except BadInputError as exc:
        raise JobError(f"cannot read image {exc}") from exc


def write_gray(path: str | Path, array: np.ndarray) -> None:
    """Write via a temporary name and rename: an interrupted run never leaves a half-written file that a re-run
    would take for a finished one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = Image.registered_extensions().get(path.suffix.lower(), "PNG")
    tmp = path.with_name(f".{path.name}.partial")
    Image.fromarray(np.asarray(array, dtype=np.uint8), mode="L").save(tmp, format=fmt)
    os.replace(tmp, path)


TRIMAP_DRIFT = 16            # JPEG-stored trimaps: values this close to 0/128/255 are snapped to them
TRIMAP_MAX_ODD = 0.05        # more pixels than this farther off and the file is refused as not a trimap


def check_trimap(trimap: np.ndarray, path: str | Path) -> np.ndarray:
    """The trimap as exactly 0/128/255, from the encodings in common use, each recognised explicitly:
    0/128/255, 0/127/255, label-coded 0/1/2 (background / unknown / foreground), and 0/128/255 stored lossily (values
    within ±16 snapped). Anything else (a 0/1 mask, an alpha matte, a photo) is refused with what was seen."""
    values = np.unique(trimap)
    seen = set(values.tolist())
    if seen <= {0, 1, 2} and seen != {0}:
        if 2 not in seen:
            raise JobError(f"trimap {path}: only the values {sorted(seen)}: a binary 0/1 mask, or a label trimap "
                           "without foreground? Give a 0/128/255 (or 0/1/2 labelled) trimap")
        log.info("trimap %s is label-coded 0/1/2: read as background/unknown/foreground", path)
        return np.array([0, 128, 255], np.uint8)[trimap]
    if seen <= {0, 127, 128, 255}:
        out = trimap.astype(np.uint8, copy=True)
        out[out == 127] = 128
        return out
    nearest = np.array([0, 128, 255], np.int16)
    distance = np.abs(trimap.astype(np.int16)[..., None] - nearest)
    odd = float(np.mean(distance.min(axis=-1) > TRIMAP_DRIFT))
    if odd > TRIMAP_MAX_ODD:
        sample = ", ".join(str(v) for v in values[:: max(1, len(values) // 8)][:8])
        raise JobError(f"trimap {path}: {len(values)} distinct values ({sample}, ...) and {odd:.0%} of pixels are not "
                       "near 0/128/255: this looks like an alpha matte or a photo, not a trimap")
    log.info("trimap %s has %d values off 0/128/255 (lossy file?): snapped to the nearest", path, len(values))
    return nearest.astype(np.uint8)[distance.argmin(axis=-1)]


def grid_png(path: str | Path, image: np.ndarray, trimap: np.ndarray, pred: np.ndarray, truth: np.ndarray,
             max_side: int = 320) -> Path:
    """Save image | trimap | prediction | truth side by side (uint8 inputs, greys expanded to RGB)."""
    tiles = [image] + [np.repeat(g[..., None], 3, axis=2) for g in (trimap, pred, truth)]
    h, w = image.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    resized = [np.asarray(Image.fromarray(t.astype(np.uint8)).resize(size, Image.BILINEAR)) for t in tiles]
    sep = np.full((size[1], 4, 3), 255, np.uint8)
    row = np.concatenate([x for t in resized for x in (t, sep)][:-1], axis=1)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(row).save(path)
    return Path(path)
