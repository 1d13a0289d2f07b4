"""Sample encoders: turn one task's arguments into a WebDataset sample (`__key__` + encoded member bytes).

Member layout follows the data contract: fg -> fg.png|fg.jpg, alpha.png, meta.json; bg -> bg.jpg;
test/val -> image.png, trimap.png, alpha.png, meta.json; train -> image.png, alpha.png, trimap.png, fg.png, bg.jpg;
photo -> image.png (the photo as it is), alpha.png, trimap.png, fg.png, bg.jpg, meta.json.
A foreground estimated from a photo (image+alpha datasets) is an fg.png whose meta.json has "fg_estimated".
"""
from __future__ import annotations

import functools
import json
import logging
from pathlib import Path

import numpy as np

from .tasks import encoder
from .compositing import composite, fit_background, trimap_from_alpha
from .foreground import METHOD, estimate_foreground, estimate_layers
from .images import BadInputError, encode_jpg, encode_png, load_alpha, load_rgb, passthrough_format
from .synthetic import make_background, make_foreground
from .trimaps import TrimapError, read_trimap_values

log = logging.getLogger(__name__)


def _meta(**kw) -> bytes:
    return json.dumps(kw, sort_keys=True).encode()


def _composite_sample(key: str, fg: np.ndarray, alpha: np.ndarray, bg: np.ndarray, fg_name: str, bg_name: str,
                      train: bool, trimap: np.ndarray | None = None, estimated: bool = False) -> dict:
    h, w = alpha.shape
    bg_fit = fit_background(bg, h, w)
    image = composite(fg, alpha, bg_fit)
    sample = {"__key__": key, "image.png": encode_png(image), "alpha.png": encode_png(alpha),
              "trimap.png": encode_png(trimap_from_alpha(alpha) if trimap is None else trimap)}
    if train:
        sample["fg.png"] = encode_png(fg)
        sample["bg.jpg"] = encode_jpg(bg_fit)
    else:
        extra = {"fg_estimated": METHOD} if estimated else {}
        sample["meta.json"] = _meta(fg=fg_name, bg=bg_name, width=w, height=h, **extra)
    return sample


# ----------------------------------------------------------------------------- synthetic
@functools.lru_cache(maxsize=16)
def _synthetic_fg(seed: int, index: int, size: int, families: tuple[float, ...] | None = None):
    return make_foreground(seed, index, size, families)


@functools.lru_cache(maxsize=16)
def _synthetic_bg(seed: int, index: int, size: int):
    return make_background(seed, index, size)


@encoder("synthetic_fg")
def synthetic_fg(key: str, seed: int, index: int, size: int, families: tuple[float, ...] | None = None) -> dict:
    fg, alpha, family = _synthetic_fg(seed, index, size, families)
    h, w = alpha.shape
    return {"__key__": key, "fg.png": encode_png(fg), "alpha.png": encode_png(alpha),
            "meta.json": _meta(source=f"synthetic:{family}:seed{seed}:fg{index}", width=w, height=h)}


@encoder("synthetic_bg")
def synthetic_bg(key: str, seed: int, index: int, size: int) -> dict:
    return {"__key__": key, "bg.jpg": encode_jpg(_synthetic_bg(seed, index, size))}


@encoder("synthetic_composite")
def synthetic_composite(key: str, seed: int, fg_index: int, bg_index: int, size: int, train: bool,
                        families: tuple[float, ...] | None = None) -> dict:
    fg, alpha, family = _synthetic_fg(seed, fg_index, size, families)
    bg = _synthetic_bg(seed, bg_index, size)
    return _composite_sample(key, fg, alpha, bg, f"synthetic:{family}:seed{seed}:fg{fg_index}",
                             f"synthetic:seed{seed}:bg{bg_index}", train)


# ----------------------------------------------------------------------------- files on disk
def _load_pair(fg_path: str, alpha_path: str, min_size: int) -> tuple[np.ndarray, np.ndarray]:
    fg = load_rgb(Path(fg_path), min_size)
    alpha = load_alpha(Path(alpha_path), min_size)
    if fg.shape[:2] != alpha.shape[:2]:
        raise BadInputError(fg_path, f"foreground is {fg.shape[1]}x{fg.shape[0]} but its alpha {alpha_path} is "
                                     f"{alpha.shape[1]}x{alpha.shape[0]}")
    return fg, alpha


@encoder("file_fg")
def file_fg(key: str, fg_path: str, alpha_path: str, min_size: int, source: str) -> dict:
    """Foreground + alpha from files; bytes are passed through unchanged when already RGB JPEG/PNG and 8-bit L PNG."""
    fg, alpha = _load_pair(fg_path, alpha_path, min_size)
    h, w = alpha.shape
    fmt = passthrough_format(Path(fg_path))
    if fmt == "jpg-RGB":
        fg_member = ("fg.jpg", Path(fg_path).read_bytes())
    elif fmt == "png-RGB":
        fg_member = ("fg.png", Path(fg_path).read_bytes())
    else:
        fg_member = ("fg.png", encode_png(fg))
    alpha_bytes = Path(alpha_path).read_bytes() if passthrough_format(Path(alpha_path)) == "png-L" \
        else encode_png(alpha)
    return {"__key__": key, fg_member[0]: fg_member[1], "alpha.png": alpha_bytes,
            "meta.json": _meta(source=source, width=w, height=h)}


@encoder("file_bg")
def file_bg(key: str, path: str, min_size: int) -> dict:
    """Background from a file; RGB JPEGs are passed through, everything else is re-encoded as JPEG."""
    img = load_rgb(Path(path), min_size)
    data = Path(path).read_bytes() if passthrough_format(Path(path)) == "jpg-RGB" else encode_jpg(img)
    return {"__key__": key, "bg.jpg": data}


def _load_trimap(trimap_path: str, alpha: np.ndarray, min_size: int) -> np.ndarray:
    """A released trimap, checked against its alpha's size and snapped to exactly 0/128/255."""
    tri = load_alpha(Path(trimap_path), min_size)
    if tri.shape != alpha.shape:
        raise BadInputError(trimap_path, f"trimap is {tri.shape[1]}x{tri.shape[0]}, alpha is "
                                         f"{alpha.shape[1]}x{alpha.shape[0]}")
    try:
        trimap, note = read_trimap_values(tri)
    except TrimapError as exc:
        raise BadInputError(trimap_path, str(exc)) from exc
    if note:
        log.info("trimap %s: %s", trimap_path, note)
    return trimap


@encoder("file_composite")
def file_composite(key: str, fg_path: str, alpha_path: str, bg_path: str, min_size: int, fg_name: str,
                   bg_name: str, train: bool, trimap_path: str | None = None) -> dict:
    fg, alpha = _load_pair(fg_path, alpha_path, min_size)
    return _on_background(key, fg, alpha, bg_path, min_size, fg_name, bg_name, train, trimap_path, False)


def _on_background(key: str, fg: np.ndarray, alpha: np.ndarray, bg_path: str, min_size: int, fg_name: str,
                   bg_name: str, train: bool, trimap_path: str | None, estimated: bool) -> dict:
    """The composite sample of a foreground over the background file (with its released trimap, if any)."""
    bg = load_rgb(Path(bg_path), min_size)
    trimap = _load_trimap(trimap_path, alpha, min_size) if trimap_path else None
    return _composite_sample(key, fg, alpha, bg, fg_name, bg_name, train, trimap, estimated=estimated)


# ----------------------------------------------------------------------------- image + alpha (estimated fg)
@functools.lru_cache(maxsize=4)
def _estimated_pair(image_path: str, alpha_path: str, min_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(estimated foreground, alpha) of a photo; cached because one photo feeds several composites in a row."""
    image, alpha = _load_pair(image_path, alpha_path, min_size)
    return estimate_foreground(image, alpha), alpha


@encoder("image_fg")
def image_fg(key: str, image_path: str, alpha_path: str, min_size: int, source: str) -> dict:
    """Foreground estimated from the photo and its alpha; meta.json says it is estimated and how."""
    fg, alpha = _estimated_pair(image_path, alpha_path, min_size)
    h, w = alpha.shape
    return {"__key__": key, "fg.png": encode_png(fg), "alpha.png": encode_png(alpha),
            "meta.json": _meta(source=source, width=w, height=h, fg_estimated=METHOD)}


@encoder("image_composite")
def image_composite(key: str, image_path: str, alpha_path: str, bg_path: str, min_size: int, fg_name: str,
                    bg_name: str, train: bool, trimap_path: str | None = None) -> dict:
    fg, alpha = _estimated_pair(image_path, alpha_path, min_size)
    return _on_background(key, fg, alpha, bg_path, min_size, fg_name, bg_name, train, trimap_path, True)


@encoder("image_photo")
def image_photo(key: str, image_path: str, alpha_path: str, min_size: int, source: str) -> dict:
    """A training photo kept as it is (never re-composited by the loader), with its alpha, a trimap made from the
    alpha, and the estimated foreground and background its composition loss needs."""
    image, alpha = _load_pair(image_path, alpha_path, min_size)
    fg, bg = estimate_layers(image, alpha)
    h, w = alpha.shape
    return {"__key__": key, "image.png": encode_png(image), "alpha.png": encode_png(alpha),
            "trimap.png": encode_png(trimap_from_alpha(alpha)), "fg.png": encode_png(fg), "bg.jpg": encode_jpg(bg),
            "meta.json": _meta(source=source, width=w, height=h, fg_estimated=METHOD, bg_estimated=METHOD,
                               recomposite=False)}


@encoder("c1k_test")
def c1k_test(key: str, merged_path: str, alpha_path: str, trimap_path: str | None, min_size: int,
             fg_name: str, bg_name: str) -> dict:
    """A Composition-1k test composite: the released merged image, its alpha, and its trimap (or one made from
    the alpha when the release lacks it). Trimap values are snapped to exactly 0/128/255."""
    image = load_rgb(Path(merged_path), min_size)
    alpha = load_alpha(Path(alpha_path), min_size)
    if image.shape[:2] != alpha.shape[:2]:
        raise BadInputError(merged_path, f"composite is {image.shape[1]}x{image.shape[0]} but alpha {alpha_path} "
                                         f"is {alpha.shape[1]}x{alpha.shape[0]}")
    trimap = _load_trimap(trimap_path, alpha, min_size) if trimap_path else trimap_from_alpha(alpha)
    h, w = alpha.shape
    return {"__key__": key, "image.png": encode_png(image), "trimap.png": encode_png(trimap),
            "alpha.png": encode_png(alpha), "meta.json": _meta(fg=fg_name, bg=bg_name, width=w, height=h)}
