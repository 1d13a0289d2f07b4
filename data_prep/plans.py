"""Plans: the ordered list of tasks per shard kind that each command wants written.

Plans are pure functions of the options and the input listing, shuffled with the seed, so re-running a command
reproduces the same plan (which is what makes resuming and `nothing rewritten needlessly` possible).
"""
from __future__ import annotations

import logging
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from .tasks import Task, file_fingerprint, task_digest
from .foreground import METHOD
from .images import BadInputError
from .sources import InputError, list_backgrounds, list_images, match_pairs, require_dir, unique_keys, unique_stems

log = logging.getLogger(__name__)


def shuffled(tasks: list[Task], seed: int, kind: str) -> list[Task]:
    """Seeded shuffle, independent per kind, so samples of one source do not cluster in one shard."""
    rng = random.Random(f"{seed}:{kind}")
    tasks = list(tasks)
    rng.shuffle(tasks)
    return tasks


def synthetic_split_sizes(count: int, val_count: int | None, test_count: int | None) -> tuple[int, int, int]:
    """(train fgs, val fgs, test fgs, backgrounds): val/test foregrounds are extra, held-out indices."""
    val = max(2, count // 6) if val_count is None else val_count
    test = max(2, count // 4) if test_count is None else test_count
    return count, val, test


def synthetic_plan(count: int, size: int, seed: int, val_count: int | None, test_count: int | None,
                   test_composites: int, train_composites: int, val_composites: int = 2,
                   families: tuple[float, ...] | None = None) -> dict[str, list[Task]]:
    """Synthetic dataset layout.

    Foreground indices 0..N-1 go to fg shards (training), the next V indices are the validation foregrounds and
    the next T the test foregrounds, so val/test never share a foreground with training. Backgrounds
    0..max(8, N)-1 go to bg shards; every val/test composite uses its own further background index (held out
    from bg shards too). Optional train composites put training foregrounds on training backgrounds.
    """
    n, v, t = synthetic_split_sizes(count, val_count, test_count)
    n_bg = max(8, count)
    plan: dict[str, list[Task]] = {"fg": [], "bg": [], "val": [], "test": [], "train": []}
    # a family mix other than the built-in one changes every foreground: it is part of their digests (and args)
    base = ("synthetic", seed, size) if families is None else ("synthetic", seed, size, "families", *families)
    fam = () if families is None else (families,)
    for i in range(n):
        plan["fg"].append(Task("fg", "synthetic_fg", (f"fg{i:06d}", seed, i, size, *fam),
                               task_digest(*base, "fg", i)))
    for i in range(n_bg):
        plan["bg"].append(Task("bg", "synthetic_bg", (f"bg{i:06d}", seed, i, size), task_digest(*base, "bg", i)))
    held_bg = n_bg
    for kind, first, nfg, per in (("val", n, v, val_composites), ("test", n + v, t, test_composites)):
        for f in range(first, first + nfg):
            for j in range(per):
                key = f"{kind}{f:06d}_{j}"
                plan[kind].append(Task(kind, "synthetic_composite", (key, seed, f, held_bg, size, False, *fam),
                                       task_digest(*base, kind, f, held_bg)))
                held_bg += 1
    rng = random.Random(f"{seed}:train-bg")
    for i in range(n if train_composites else 0):
        for j in range(train_composites):
            b = rng.randrange(n_bg)
            plan["train"].append(Task("train", "synthetic_composite",
                                      (f"train{i:06d}_{j}", seed, i, b, size, True, *fam),
                                      task_digest(*base, "train", i, b)))
    return {k: shuffled(v_, seed, k) for k, v_ in plan.items() if v_}


# ----------------------------------------------------------------------------- folders / composition-1k
@dataclass
class FolderInputs:
    """Matched raw inputs after the listing checks."""

    pairs: list[tuple[str, Path, Path]]          # (name, fg, alpha) training-side foregrounds
    backgrounds: list[Path]
    test_merged: list[tuple[str, Path, Path, Path | None]] = field(default_factory=list)  # c1k test composites
    bad: list[BadInputError] = field(default_factory=list)
    #: the pairs hold the photo, not a foreground: the foreground is estimated at shard time (data_prep/foreground.py)
    images: bool = False
    #: a layout's own test foregrounds (name, fg, alpha, trimap or None), composited on held-out backgrounds
    test_pairs: list[tuple[str, Path, Path, Path | None]] = field(default_factory=list)
    #: released trimaps by pair name, used when --test-count holds pairs out as real test images
    trimaps: dict[str, Path] = field(default_factory=dict)
    #: test composites to make on given backgrounds: (key, fg, alpha, background, released trimap)
    test_to_composite: list[tuple[str, Path, Path, Path, Path]] = field(default_factory=list)


def _fp(path: Path) -> list:
    return file_fingerprint(path)


def _sequence(name: str) -> str:
    """Frames of one clip share a name but their trailing number (Composition-1k's `archeology_00000` ...
    `archeology_00245`): they are held out together or not at all."""
    return re.sub(r"_\d+$", "", name)


def split_foregrounds(pairs: list, seed: int, val_count: int, test_count: int) -> tuple[list, list, list]:
    """Seeded split of the matched foregrounds (name first in each pair) into (train, val, test); train keeps at
    least one. Whole sequences go to one side (near-identical frames on both sides would flatter validation), so
    a held-out set takes a sequence only while it fits its count; it comes out smaller, with a warning, only when
    the sequences left are all too long."""
    if val_count + test_count >= len(pairs):
        raise InputError(f"--val-count {val_count} + --test-count {test_count} leave no training foreground "
                         f"(only {len(pairs)} matched fg/alpha pairs)")
    groups: dict[str, list] = {}
    for pair in sorted(pairs):
        groups.setdefault(_sequence(pair[0]), []).append(pair)
    order = sorted(groups)
    random.Random(f"{seed}:split").shuffle(order)
    val: list = []
    test: list = []
    train: list = []
    for key in order:
        group = groups[key]
        if len(val) + len(group) <= val_count:
            val += group
        elif len(test) + len(group) <= test_count:
            test += group
        else:
            train += group
    for what, got, want in (("--val-count", len(val), val_count), ("--test-count", len(test), test_count)):
        if got < want:
            log.warning("%s %d: only %d foregrounds held out (the other sequences are longer than what is left)",
                        what, want, got)
    return sorted(train), sorted(val), sorted(test)


def _pick_backgrounds(rng: random.Random, n_bg: int, k: int) -> list[int]:
    """k distinct background indices when possible (with repeats only when there are fewer than k)."""
    if k <= n_bg:
        return rng.sample(range(n_bg), k)
    return [rng.randrange(n_bg) for _ in range(k)]


def folder_plan(inputs: FolderInputs, *, seed: int, min_size: int, val_count: int, test_count: int,
                test_composites: int, val_composites: int, train_composites: int, photos: bool = False
                ) -> dict[str, list[Task]]:
    """fg/bg shards from matched files; val/test/train composites DIM-style on seeded backgrounds.

    With --test-composites K but --test-count 0 the test composites use the training foregrounds themselves
    (logged as a warning: such a test set measures fit, not generalisation). For image+alpha data
    (`inputs.images`) every foreground is estimated from the photo, and --test-count holds photos out as real
    test images (with their released trimap where the layout has one) instead of composites; with `photos` every
    training photo is also written as it is to photo-* shards (trained on without re-compositing).
    """
    if photos and not inputs.images:
        raise InputError("--photos needs an image + alpha layout (this one ships foregrounds, not photos)")
    train, val, test = split_foregrounds(inputs.pairs, seed, val_count, test_count)
    bgs = inputs.backgrounds
    est = [METHOD] if inputs.images else []  # part of every digest: estimated shards never resume as real ones
    fg_fn, comp_fn = ("image_fg", "image_composite") if inputs.images else ("file_fg", "file_composite")
    fg_keys = dict(zip([p[0] for p in inputs.pairs], unique_keys([p[0] for p in inputs.pairs])))
    bg_keys = unique_keys([b.stem for b in bgs], "bg_")
    plan: dict[str, list[Task]] = {k: [] for k in ("fg", "bg", "val", "test", "train", "photo")}
    for name, fg, alpha in train:
        plan["fg"].append(Task("fg", fg_fn, (fg_keys[name], str(fg), str(alpha), min_size, fg.name),
                               task_digest("fg", _fp(fg), _fp(alpha), min_size, *est)))
        if photos:
            plan["photo"].append(Task("photo", "image_photo", (fg_keys[name], str(fg), str(alpha), min_size, fg.name),
                                      task_digest("photo", _fp(fg), _fp(alpha), min_size, *est)))
    for key, bg in zip(bg_keys, bgs):
        plan["bg"].append(Task("bg", "file_bg", (key, str(bg), min_size), task_digest("bg", _fp(bg), min_size)))
    real_test = [(name, fg, alpha, inputs.trimaps.get(name)) for name, fg, alpha in test] if inputs.images else []
    comp_test = [] if inputs.images else [(n, f, a, None) for n, f, a in test]
    if (test_composites and not comp_test and not inputs.test_merged and not inputs.test_pairs and not real_test
            and not inputs.test_to_composite):
        log.warning("--test-composites without --test-count: test composites reuse the training foregrounds")
        comp_test = [(n, f, a, None) for n, f, a in train]
    test_keys = dict(zip([t[0] for t in inputs.test_pairs], unique_keys([t[0] for t in inputs.test_pairs])))
    fg_keys.update({k: v for k, v in test_keys.items() if k not in fg_keys})
    comp_test += inputs.test_pairs
    if inputs.test_pairs and not test_composites:
        raise InputError(f"{len(inputs.test_pairs)} test foregrounds need --test-composites >= 1")
    for kind, fgs, k in (("val", [(n, f, a, None) for n, f, a in val], val_composites),
                         ("test", comp_test, test_composites),
                         ("train", [(n, f, a, None) for n, f, a in train], train_composites)):
        if not fgs or not k:
            continue
        if not bgs:
            raise InputError(f"{kind} composites need backgrounds, but none are usable")
        rng = random.Random(f"{seed}:{kind}-bg")
        for name, fg, alpha, trimap in fgs:
            tri = str(trimap) if trimap else None
            for j, b in enumerate(_pick_backgrounds(rng, len(bgs), k)):
                bg = bgs[b]
                plan[kind].append(Task(kind, comp_fn,
                                       (f"{fg_keys[name]}_{j}", str(fg), str(alpha), str(bg), min_size, fg.name,
                                        bg.name, kind == "train", tri),
                                       task_digest(kind, _fp(fg), _fp(alpha), _fp(bg), min_size, *est,
                                                   *([_fp(trimap)] if trimap else []))))
    made_keys = unique_keys([t[0] for t in inputs.test_to_composite])
    for key, (_, fg, alpha, bg, trimap) in zip(made_keys, inputs.test_to_composite):
        plan["test"].append(Task("test", "file_composite",
                                 (key, str(fg), str(alpha), str(bg), min_size, fg.name, bg.name, False, str(trimap)),
                                 task_digest("test", _fp(fg), _fp(alpha), _fp(bg), min_size, _fp(trimap))))
    merged = inputs.test_merged + real_test
    merged_keys = unique_keys([t[0] for t in merged])
    for key, (name, image, alpha, trimap) in zip(merged_keys, merged):
        fg_name = alpha.name
        plan["test"].append(Task("test", "c1k_test", (key, str(image), str(alpha), str(trimap) if trimap else None,
                                                      min_size, fg_name, image.name),
                                 task_digest("c1k", _fp(image), _fp(alpha), _fp(trimap) if trimap else None,
                                             min_size)))
    return {k: shuffled(v, seed, k) for k, v in plan.items() if v}


def folder_inputs(fg_dir: Path, alpha_dir: Path, bg_dir: Path) -> FolderInputs:
    """List and match `folders` inputs (raises InputError for missing/empty directories)."""
    bad: list[BadInputError] = []
    pairs = match_pairs(fg_dir, alpha_dir, bad)
    bgs = list_backgrounds(bg_dir, bad)
    return FolderInputs(pairs, bgs, [], bad)


def _first_dir(candidates: list[Path]) -> Path | None:
    return next((c for c in candidates if c.is_dir()), None)


def composition1k_inputs(root: Path, bg_dir: Path, test_bg_dir: Path | None = None) -> FolderInputs:
    """Adobe Composition-1k layout.

    Training: `Training_set/{fg,alpha}`, or `Training_set/Adobe-licensed images/{fg,alpha}` plus optional
    `Training_set/Other/{fg,alpha}`. Test: `Test_set/{merged,alpha,trimaps}` (each of them also looked up under
    `Test_set/Adobe-licensed images/`), merged composites named `<fg>_<i>.png`, alphas `<fg>.*`, trimaps
    `<fg>_<i>.png` or `<fg>.png`; or, given `test_bg_dir` (PASCAL VOC's JPEGImages), the Test_set as Adobe ships it
    (`composition1k_test_to_composite`).
    """
    require_dir(root, "Composition-1k root")
    bad: list[BadInputError] = []
    train_root = root / "Training_set"
    groups = [g for g in (train_root, train_root / "Adobe-licensed images", train_root / "Other")
              if (g / "fg").is_dir() and (g / "alpha").is_dir()]
    if not groups:
        raise InputError(f"{root}: no Training_set/fg + Training_set/alpha (or the 'Adobe-licensed images' "
                         "variant) found")
    pairs: list[tuple[str, Path, Path]] = []
    for g in groups:
        pairs.extend(match_pairs(g / "fg", g / "alpha", bad))
    names = [p[0] for p in pairs]
    dup = {n for n in names if names.count(n) > 1}
    for n, fg, _a in pairs:
        if n in dup:
            bad.append(BadInputError(fg, f"duplicate foreground stem {n!r} across Training_set groups"))
    pairs = sorted(p for p in pairs if p[0] not in dup)
    bgs = list_backgrounds(bg_dir, bad)

    test_merged: list[tuple[str, Path, Path, Path | None]] = []
    test_root = root / "Test_set"
    test_to_composite: list[tuple[str, Path, Path, Path, Path]] = []
    if not test_root.is_dir():
        log.warning("%s: no Test_set directory; no test shards are written", root)
    elif is_composition1k_test_set(test_root):
        test_merged = composition1k_test_files(test_root, bad)
        if test_bg_dir is not None:
            log.warning("--test-bg is not used: %s has its merged/ composites", test_root)
    elif test_bg_dir is not None:
        test_to_composite = composition1k_test_to_composite(test_root, test_bg_dir, bad)
    else:
        # as Adobe ships it: fg/alpha/trimaps and the name lists; the composites are made from PASCAL VOC
        log.warning("%s: no merged/ composites (as shipped, Test_set holds fg, alpha and trimaps, and the test "
                    "composites are made on the PASCAL VOC backgrounds of test_bg_names.txt); no test shards are "
                    "written: give --test-bg VOC/JPEGImages to make them", test_root)
    return FolderInputs(pairs, bgs, test_merged, bad, test_to_composite=test_to_composite)


def _names(path: Path) -> list[str]:
    if not path.is_file():
        raise InputError(f"{path}: missing (the Composition-1k Test_set lists its foregrounds and backgrounds there)")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def composition1k_test_to_composite(test_root: Path, bg_dir: Path,
                                    bad: list[BadInputError]) -> list[tuple[str, Path, Path, Path, Path]]:
    """The Composition-1k test set as Adobe's composition script makes it from the shipped Test_set: each foreground
    of `test_fg_names.txt`, in order, on the next 20 backgrounds of `test_bg_names.txt` (PASCAL VOC files in
    `bg_dir`), composite `i` named `<fg stem>_<i>` and scored on the released `trimaps/<fg stem>_<i>.png`. The
    composition is Deep Image Matting's (background scaled up to cover the foreground, bicubic, top-left crop);
    pixels may differ by a grey level from another tool's merged/ files. (key, fg, alpha, background, trimap)."""
    require_dir(bg_dir, "--test-bg")
    group = test_root / "Adobe-licensed images"
    fg_names, bg_names = _names(test_root / "test_fg_names.txt"), _names(test_root / "test_bg_names.txt")
    if not fg_names or len(bg_names) % len(fg_names):
        raise InputError(f"{test_root}: {len(bg_names)} backgrounds in test_bg_names.txt are not a whole number per "
                         f"foreground of test_fg_names.txt ({len(fg_names)})")
    per_fg = len(bg_names) // len(fg_names)
    out: list[tuple[str, Path, Path, Path, Path]] = []
    for i, name in enumerate(fg_names):
        fg, alpha, stem = group / "fg" / name, group / "alpha" / name, Path(name).stem
        missing = [p for p in (fg, alpha) if not p.is_file()]
        for p in missing:
            bad.append(BadInputError(p, "listed in test_fg_names.txt but missing"))
        for j in range(per_fg):
            key = f"{stem}_{j}"
            bg, trimap = bg_dir / bg_names[i * per_fg + j], group / "trimaps" / f"{key}.png"
            absent = [p for p in (bg, trimap) if not p.is_file()]
            for p in absent:
                bad.append(BadInputError(p, f"missing (test composite {key})"))
            if not missing and not absent:
                out.append((key, fg, alpha, bg, trimap))
    return out


# the ground-truth folder of a Test_set: Adobe's `alpha`, or `alpha_copy` (one matte per composite, <fg>_<i>.png) of
# the preprocessed Composition-1k test set that later papers distribute
_TEST_ALPHA_DIRS = ("alpha", "alpha_copy")


def _test_set_dirs(test_root: Path) -> tuple[Path | None, Path | None, Path | None]:
    alt = test_root / "Adobe-licensed images"
    return (_first_dir([test_root / "merged", alt / "merged"]),
            _first_dir([d / name for name in _TEST_ALPHA_DIRS for d in (test_root, alt)]),
            _first_dir([test_root / "trimaps", alt / "trimaps"]))


def is_composition1k_test_set(test_root: Path) -> bool:
    """True if `test_root` has the Test_set layout's merged/ and alpha/ or alpha_copy/ (directly or under
    'Adobe-licensed images')."""
    merged_dir, alpha_dir, _ = _test_set_dirs(test_root)
    return merged_dir is not None and alpha_dir is not None


def composition1k_test_files(test_root: Path, bad: list[BadInputError]) -> list[tuple[str, Path, Path, Path | None]]:
    """(stem, merged, alpha, trimap or None) of a Test_set folder: `{merged,alpha,trimaps}` (each also looked up
    under 'Adobe-licensed images/'; `alpha_copy/` for `alpha/`), composites `<fg>_<i>.*`, alphas `<fg>.*` or
    `<fg>_<i>.*`, trimaps `<fg>_<i>.*` or `<fg>.*`. With a trimaps folder every composite must have its trimap (the
    benchmark is scored on the released trimaps); without one the trimap is None (made from the alpha later).
    The one reader of this layout: shard building and folder evaluation both use it. Bad files go to `bad`."""
    merged_dir, alpha_dir, trimap_dir = _test_set_dirs(test_root)
    if merged_dir is None or alpha_dir is None:
        raise InputError(f"{test_root}: needs merged/ and alpha/ (or alpha_copy/) directories (trimaps/ optional)")
    alphas = unique_stems(list_images(alpha_dir, "test alpha", bad), "test alpha", bad)
    trimaps = unique_stems(list_images(trimap_dir, "test trimap", bad), "test trimap", bad) if trimap_dir else {}
    out: list[tuple[str, Path, Path, Path | None]] = []
    for stem, merged in sorted(unique_stems(list_images(merged_dir, "test composite", bad), "test composite",
                                            bad).items()):
        fg_name, _, idx = stem.rpartition("_")
        alpha = alphas.get(stem) or alphas.get(fg_name)
        if not fg_name or not idx.isdigit() or alpha is None:
            bad.append(BadInputError(merged, f"test composite name is not <fg>_<i> with an alpha {fg_name or stem}.*"
                                             f" (or {stem}.*) in {alpha_dir}"))
            continue
        trimap = trimaps.get(stem) or trimaps.get(fg_name)
        if trimap_dir is not None and trimap is None:
            bad.append(BadInputError(merged, f"no trimap {stem}.* or {fg_name}.* in {trimap_dir}"))
            continue
        out.append((stem, merged, alpha, trimap))
    return out
