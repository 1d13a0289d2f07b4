"""Listing raw input folders: stem matching, duplicates, orphans and non-image files (the cheap checks that
happen before any encoding; per-file content checks happen in the encoders)."""
from __future__ import annotations

import logging
import re
from collections import defaultdict
from pathlib import Path

from .images import BadInputError, is_image_name

log = logging.getLogger(__name__)


class InputError(ValueError):
    """A problem with the inputs as a whole (missing/empty directory, nothing left to write): never skippable."""


def require_dir(path: Path, what: str) -> Path:
    """The directory, or an InputError naming it."""
    if not path.exists():
        raise InputError(f"{path}: {what} directory does not exist")
    if not path.is_dir():
        raise InputError(f"{path}: {what} path is not a directory")
    return path


def list_images(directory: Path, what: str, bad: list[BadInputError]) -> dict[str, list[Path]]:
    """stem -> files in `directory` (not recursive; hidden files ignored). Non-image files become bad input.
    Raises InputError when the directory is missing or holds no image at all."""
    require_dir(directory, what)
    by_stem: dict[str, list[Path]] = defaultdict(list)
    for p in sorted(directory.iterdir()):
        if p.name.startswith(".") or p.is_dir():
            continue
        if not is_image_name(p):
            bad.append(BadInputError(p, f"not an image file (in the {what} directory)"))
            continue
        by_stem[p.stem].append(p)
    if not by_stem:
        raise InputError(f"{directory}: {what} directory holds no images")
    return dict(by_stem)


def unique_stems(by_stem: dict[str, list[Path]], what: str, bad: list[BadInputError]) -> dict[str, Path]:
    """Drop stems that occur more than once (a.png + a.jpg: which one is meant is unknowable)."""
    out = {}
    for stem, files in by_stem.items():
        if len(files) > 1:
            for f in files:
                bad.append(BadInputError(f, f"duplicate {what} stem {stem!r} ({', '.join(x.name for x in files)})"))
        else:
            out[stem] = files[0]
    return out


def match_pairs(fg_dir: Path, alpha_dir: Path, bad: list[BadInputError],
                fg_what: str = "foreground") -> list[tuple[str, Path, Path]]:
    """(stem, fg, alpha) for stems present exactly once in both directories, sorted by stem. `fg_what` names the
    first directory's files in errors ("image" for datasets that ship the photo instead of a foreground)."""
    fgs = unique_stems(list_images(fg_dir, fg_what, bad), fg_what, bad)
    alphas = unique_stems(list_images(alpha_dir, "alpha", bad), "alpha", bad)
    for stem in sorted(set(fgs) - set(alphas)):
        bad.append(BadInputError(fgs[stem], f"{fg_what} has no alpha named {stem}.* in {alpha_dir}"))
    for stem in sorted(set(alphas) - set(fgs)):
        bad.append(BadInputError(alphas[stem], f"alpha has no {fg_what} named {stem}.* in {fg_dir}"))
    return [(s, fgs[s], alphas[s]) for s in sorted(set(fgs) & set(alphas))]


def list_backgrounds(bg_dir: Path, bad: list[BadInputError]) -> list[Path]:
    """Background files sorted by name (duplicated stems are fine: backgrounds are not matched to anything)."""
    return sorted(p for files in list_images(bg_dir, "background", bad).values() for p in files)


def safe_key(name: str) -> str:
    """A WebDataset/DALI-safe key: no dots (they start the extension), no slashes or spaces."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_") or "x"


def unique_keys(names: list[str], prefix: str = "") -> list[str]:
    """safe_key for each name, made unique with a numeric suffix where sanitising collides."""
    seen: dict[str, int] = {}
    out = []
    for n in names:
        k = prefix + safe_key(n)
        if k in seen:
            seen[k] += 1
            k = f"{k}_{seen[k]}"
        seen.setdefault(k, 0)
        out.append(k)
    return out
