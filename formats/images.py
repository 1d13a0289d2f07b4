"""The image file suffixes the project reads (raw inputs of data_prep, evaluation folders and predict inputs).

A tuple, not a set: its order is the order in which same-stem files are looked up (predict's trimap of `a.jpg` is
`a.png` before `a.jpg`).
"""
from __future__ import annotations

from pathlib import Path

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def is_image_name(path: str | Path) -> bool:
    """True when the file's suffix (any case) is one of IMAGE_SUFFIXES."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES
