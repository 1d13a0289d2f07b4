"""Image file I/O for evaluate/predict and the per-epoch PNG grid (image | trimap | prediction | truth)."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
from PIL import Image

from data_prep.images import BadInputError, load_alpha, load_rgb
from data_prep.trimaps import TrimapError, read_trimap_values
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


def check_trimap(trimap: np.ndarray, path: str | Path) -> np.ndarray:
    """The trimap as exactly 0/128/255 by data_prep's one rule for trimap files (`read_trimap_values`), or a
    JobError naming the file."""
    try:
        out, note = read_trimap_values(trimap)
    except TrimapError as exc:
        raise JobError(f"trimap {path}: {exc}") from exc
    if note:
        log.info("trimap %s: %s", path, note)
    return out


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
