"""`python -m data_prep trimap`: trimap PNGs for one alpha/mask file or a folder of them.

All targets are checked before anything is written (an output that is an input is always refused, an existing one
unless ``overwrite``), the same convention as `jobs predict`, so a typo in --out never costs the user a file.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image

from formats.images import is_image_name

from .images import BadInputError, load_alpha
from .sources import InputError
from .trimaps import BandRadius, TrimapError, trimap_from_alpha, trimap_from_mask

log = logging.getLogger(__name__)

MODES = ("alpha", "mask")


def plan_targets(source: Path, out: Path) -> list[tuple[Path, Path]]:
    """(input, output PNG) pairs: a file gives one (``out`` a file, or ``out/<stem>.png`` for an existing folder);
    a folder gives ``out/<stem>.png`` for each image in it (not recursive, hidden files ignored)."""
    if not source.exists():
        raise InputError(f"{source} does not exist")
    if source.is_file():
        if out.is_dir():
            return [(source, out / f"{source.stem}.png")]
        return [(source, out if out.suffix.lower() == ".png" else out.with_name(out.name + ".png"))]
    if out.exists() and not out.is_dir():
        raise InputError(f"{source} is a folder, so --out must be a folder ({out} is a file)")
    if out.resolve() == source.resolve():
        raise InputError(f"--out {out} is the input folder: the trimaps would land among (or over) the inputs; "
                         "choose another --out")
    files = sorted(p for p in source.iterdir() if p.is_file() and not p.name.startswith(".") and is_image_name(p))
    if not files:
        raise InputError(f"{source} holds no images")
    by_stem: dict[str, list[Path]] = {}
    for f in files:
        by_stem.setdefault(f.stem, []).append(f)
    dup = next((v for v in by_stem.values() if len(v) > 1), None)
    if dup:
        raise InputError(f"{dup[0]}: {', '.join(p.name for p in dup)} would all become {dup[0].stem}.png; "
                         "keep one of them")
    return [(f, out / f"{f.stem}.png") for f in files]


def check_targets(pairs: list[tuple[Path, Path]], overwrite: bool, what: str = "trimap",
                  other_inputs: Iterable[Path] = ()) -> None:
    """Refuse, before anything is written, an output that is an input (always: a `source` of `pairs` or one of
    `other_inputs`) or that exists (unless ``overwrite``). `what` names the outputs in the messages. Also the check of
    `jobs predict`, whose mattes have a second input (the trimap or mask)."""
    inputs = {src.resolve() for src, _ in pairs} | {p.resolve() for p in other_inputs}
    for src, target in pairs:
        if target.resolve() in inputs:
            raise InputError(f"--out would write the {what} of {src} over the input file {target}: choose another "
                             "--out")
    existing = [t for _, t in pairs if t.exists()]
    if existing and not overwrite:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise InputError(f"{existing[0]} exists{more}: pass --overwrite to replace existing {what}s")


def _write_png(path: Path, trimap: np.ndarray) -> None:
    """Write via a temporary name and rename, so an interrupted run never leaves a half-written trimap."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    Image.fromarray(trimap, mode="L").save(tmp, format="PNG")
    os.replace(tmp, path)


def make_trimap_file(source: Path, mode: str, band: BandRadius) -> tuple[np.ndarray, str]:
    """(trimap, how it was made) of one alpha or mask file; a bad file raises InputError naming it."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    try:
        gray = load_alpha(source)
        make = trimap_from_alpha if mode == "alpha" else trimap_from_mask
        made = make(gray, band)
    except BadInputError as exc:
        raise InputError(f"{exc}") from exc
    except TrimapError as exc:
        raise InputError(f"{source}: {exc}") from exc
    return made.trimap, f"{made.how}, {float(np.mean(made.trimap == 128)):.1%} unknown"


def make_trimaps(source: Path, out: Path, mode: str, band: BandRadius,
                 overwrite: bool = False) -> list[tuple[Path, str]]:
    """Write the trimap of every input; returns (output, how) pairs. Stops at the first bad input, naming it."""
    pairs = plan_targets(source, out)
    check_targets(pairs, overwrite)
    done = []
    for src, target in pairs:
        trimap, how = make_trimap_file(src, mode, band)
        _write_png(target, trimap)
        log.info("%s -> %s (%s)", src, target, how)
        done.append((target, how))
    return done
