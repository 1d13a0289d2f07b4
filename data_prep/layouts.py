"""Readers for the public matting datasets' folder layouts, one function per layout.

Each reader only lists and matches files into `FolderInputs`; sample planning and encoding are shared with
`folders` and `composition1k` (plans.folder_plan). Two families: datasets that ship foregrounds (composited on
`--bg` backgrounds like Composition-1k) and datasets that ship only the photo and its alpha (`images=True`: the
foreground is estimated at shard time, see foreground.py). Released test splits with trimaps become test-* shards
that keep those trimaps.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .images import BadInputError
from .plans import FolderInputs
from .sources import InputError, list_backgrounds, list_images, match_pairs, require_dir, unique_stems


@dataclass(frozen=True)
class Layout:
    """A dataset layout: CLI name, one-line help, the expected tree (shown by --help) and its reader."""

    name: str
    title: str
    tree: str
    read: Callable[[Path, Path | None, list[BadInputError]], FolderInputs]
    images: bool = False          # image + alpha only: foregrounds are estimated
    own_backgrounds: str = ""     # a folder under --root used when --bg is not given
    test_composites: int = 0      # default backgrounds per released test foreground (layouts with a test split)


def _dir(root: Path, rel: str) -> Path:
    """root/rel, or an InputError that names the missing folder of the layout."""
    path = root / rel
    if not path.is_dir():
        raise InputError(f"{root}: expected the folder {rel}/ of this layout (see --help for the tree)")
    return path


def _trimaps(directory: Path, bad: list[BadInputError]) -> dict[str, Path]:
    return unique_stems(list_images(directory, "trimap", bad), "trimap", bad)


def _with_trimaps(pairs: list[tuple[str, Path, Path]], trimaps: dict[str, Path], prefix: str = ""
                  ) -> list[tuple[str, Path, Path, Path | None]]:
    return [(prefix + n, f, a, trimaps.get(n)) for n, f, a in pairs]


def _bgs(bg: Path | None, bad: list[BadInputError]) -> list[Path]:
    if bg is None:
        raise InputError("--bg is required: this layout has no backgrounds of its own")
    return list_backgrounds(bg, bad)


def read_distinctions646(root: Path, bg: Path | None, bad: list[BadInputError]) -> FolderInputs:
    """Distinctions-646: Train/{FG,GT} foregrounds; Test/{FG,GT} composited on held-out backgrounds."""
    pairs = match_pairs(_dir(root, "Train/FG"), _dir(root, "Train/GT"), bad)
    test = [(n, f, a, None) for n, f, a in match_pairs(_dir(root, "Test/FG"), _dir(root, "Test/GT"), bad)] \
        if (root / "Test").is_dir() else []
    return FolderInputs(pairs, _bgs(bg, bad), [], bad, test_pairs=test)


def read_transparent460(root: Path, bg: Path | None, bad: list[BadInputError]) -> FolderInputs:
    """Transparent-460: Train/{fg,alpha}; Test/{fg,alpha,trimap} composited with the released trimaps."""
    pairs = match_pairs(_dir(root, "Train/fg"), _dir(root, "Train/alpha"), bad)
    test: list[tuple[str, Path, Path, Path | None]] = []
    if (root / "Test").is_dir():
        tri = _trimaps(root / "Test/trimap", bad) if (root / "Test/trimap").is_dir() else {}
        test = _with_trimaps(match_pairs(_dir(root, "Test/fg"), _dir(root, "Test/alpha"), bad), tri)
    return FolderInputs(pairs, _bgs(bg, bad), [], bad, test_pairs=test)


def read_hhm50k(root: Path, bg: Path | None, bad: list[BadInputError]) -> FolderInputs:
    """HHM-50K: foregrounds/ + alphas/ re-composited on backgrounds/ (or --bg); images/ are not needed."""
    pairs = match_pairs(_dir(root, "foregrounds"), _dir(root, "alphas"), bad)
    return FolderInputs(pairs, list_backgrounds(bg or _dir(root, "backgrounds"), bad), [], bad)


def read_simd(root: Path, bg: Path | None, bad: list[BadInputError]) -> FolderInputs:
    """SIMD: <class>/{fg,alpha}; names become <class>__<stem>, the category convention `jobs evaluate` reads."""
    require_dir(root, "SIMD root")
    classes = sorted(d for d in root.iterdir() if d.is_dir() and (d / "fg").is_dir() and (d / "alpha").is_dir())
    if not classes:
        raise InputError(f"{root}: no <class>/fg + <class>/alpha folders found")
    pairs = [(f"{c.name}__{n}", f, a) for c in classes for n, f, a in match_pairs(c / "fg", c / "alpha", bad)]
    return FolderInputs(sorted(pairs), _bgs(bg, bad), [], bad)


def read_am2k(root: Path, bg: Path | None, bad: list[BadInputError]) -> FolderInputs:
    """AM-2k: train/{original,mask} photos; validation/{original,mask,trimap} as real test images."""
    pairs = match_pairs(_dir(root, "train/original"), _dir(root, "train/mask"), bad, "image")
    test: list[tuple[str, Path, Path, Path | None]] = []
    if (root / "validation").is_dir():
        tri = _trimaps(_dir(root, "validation/trimap"), bad)
        test = _with_trimaps(match_pairs(_dir(root, "validation/original"), _dir(root, "validation/mask"), bad,
                                         "image"), tri)
    return FolderInputs(pairs, _bgs(bg, bad), test, bad, images=True)


def read_p3m10k(root: Path, bg: Path | None, bad: list[BadInputError]) -> FolderInputs:
    """P3M-10k: train/{blurred_image,mask}; validation/P3M-500-P/{blurred_image,mask,trimap} and
    validation/P3M-500-NP/{original_image,mask,trimap} as real test images named P3M-500-P__<stem> / -NP__."""
    pairs = match_pairs(_dir(root, "train/blurred_image"), _dir(root, "train/mask"), bad, "image")
    test: list[tuple[str, Path, Path, Path | None]] = []
    for sub, img in (("P3M-500-P", "blurred_image"), ("P3M-500-NP", "original_image")):
        base = f"validation/{sub}"
        if (root / base).is_dir():
            tri = _trimaps(_dir(root, f"{base}/trimap"), bad)
            test += _with_trimaps(match_pairs(_dir(root, f"{base}/{img}"), _dir(root, f"{base}/mask"), bad,
                                              "image"), tri, f"{sub}__")
    return FolderInputs(pairs, _bgs(bg, bad), test, bad, images=True)


def _flat_images(image_dir: str, alpha_dir: str, trimap_dir: str | None = None):
    """A reader for one image/ + alpha/ (+ trimap/) folder pair; --test-count holds photos out as test images."""
    def read(root: Path, bg: Path | None, bad: list[BadInputError]) -> FolderInputs:
        pairs = match_pairs(_dir(root, image_dir), _dir(root, alpha_dir), bad, "image")
        tri = _trimaps(_dir(root, trimap_dir), bad) if trimap_dir else {}
        return FolderInputs(pairs, _bgs(bg, bad), [], bad, images=True, trimaps=tri)
    return read


LAYOUTS: dict[str, Layout] = {lay.name: lay for lay in (
    Layout("distinctions646", "Distinctions-646 (foregrounds)", "Train/FG/*  Train/GT/*  [Test/FG/*  Test/GT/*]",
           read_distinctions646, test_composites=2),
    Layout("transparent460", "Transparent-460 (foregrounds, test trimaps)",
           "Train/fg/*  Train/alpha/*  [Test/fg/*  Test/alpha/*  Test/trimap/*]", read_transparent460,
           test_composites=2),
    Layout("hhm50k", "HHM-50K (foregrounds + its own backgrounds)",
           "images/*  alphas/*  foregrounds/*  backgrounds/*", read_hhm50k, own_backgrounds="backgrounds"),
    Layout("simd", "SIMD (foregrounds by class)", "<class>/fg/*  <class>/alpha/*  (one folder per class)",
           read_simd),
    Layout("am2k", "AM-2k (image + alpha)",
           "train/original/*  train/mask/*  [validation/original/*  validation/mask/*  validation/trimap/*]",
           read_am2k, images=True),
    Layout("p3m10k", "P3M-10k (image + alpha)",
           "train/blurred_image/*  train/mask/*  [validation/P3M-500-P/{blurred_image,mask,trimap}/*\n"
           "  validation/P3M-500-NP/{original_image,mask,trimap}/*]", read_p3m10k, images=True),
    Layout("ppm100", "PPM-100 (image + alpha; JPEG mattes)", "image/*  matte/*", _flat_images("image", "matte"),
           images=True),
    Layout("aim500", "AIM-500 (image + alpha + trimap)", "original/*  mask/*  trimap/*",
           _flat_images("original", "mask", "trimap"), images=True),
    Layout("rwp636", "RealWorldPortrait-636 (image + alpha)", "image/*  alpha/*", _flat_images("image", "alpha"),
           images=True),
)}
