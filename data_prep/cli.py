"""Command line: `python -m data_prep {folders,composition1k,<dataset layout>,synthetic,trimap,verify,stats} ...`
(`--help` on each; the dataset layouts are listed in data_prep/layouts.py)."""
from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from pathlib import Path
from typing import Callable

from formats.encoding import DEFAULT_ENCODING, ENCODINGS

from formats import object_store

from .build import BuildResult, DatasetExistsError
from .remote_build import build_at
from .images import BadInputError
from .manifest import ManifestError
from .sources import InputError

log = logging.getLogger("data_prep")

DEFAULT_SHARD_SIZE = "256MB"


def parse_size(text: str) -> int:
    """'256MB', '1.5GB', '500KB', '4096' -> bytes (K/M/G are powers of 1024)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgt]?i?b?)?\s*", text, re.IGNORECASE)
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (examples: 256MB, 1GB, 500KB, 1048576)")
    unit = (m.group(2) or "").lower().rstrip("b").rstrip("i")
    mult = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}[unit]
    value = int(float(m.group(1)) * mult)
    if value < 1024:
        raise argparse.ArgumentTypeError(f"shard size {text!r} is below 1 KiB")
    return value


def int_at_least(minimum: int, name: str, why: str = "") -> Callable[[str], int]:
    """An argparse `type` for integers >= `minimum` (`name` is what argparse shows for a non-integer); the jobs CLI
    uses it too."""
    def parse(text: str) -> int:
        v = int(text)
        if v < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}{why}, got {v}")
        return v

    parse.__name__ = name
    return parse


_positive = int_at_least(1, "_positive")
_min_size_64 = int_at_least(64, "_min_size_64", " (smaller images cannot show hair-like detail)")
_non_negative = int_at_least(0, "_non_negative")


def _family_weights(text: str) -> tuple[float, ...]:
    """argparse type of --families: the synthetic generator's parser, its errors as usage errors."""
    from .synthetic import family_weights

    try:
        return family_weights(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_writer_options(p: argparse.ArgumentParser, *, val_default: int | None, test_default: int | None) -> None:
    p.add_argument("--out", type=_location, required=True,
                   help="output dataset directory, or an s3://bucket/prefix URI (endpoint and credentials from "
                        "AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION)")
    p.add_argument("--seed", type=int, default=0, help="seed for shuffling, splits and composite backgrounds")
    p.add_argument("--shard-size", type=parse_size, default=parse_size(DEFAULT_SHARD_SIZE),
                   help=f"target shard size (default {DEFAULT_SHARD_SIZE}; K/M/G = 1024-based)")
    p.add_argument("--workers", type=_positive, default=os.cpu_count() or 1,
                   help="encoding processes (default: CPU count; not used with --ray)")
    p.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help="encode on a Ray cluster: ADDRESS as ray.init takes it (auto, host:port); bare --ray attaches "
                        "to $RAY_ADDRESS or this machine's running cluster, else starts a local one. Input files must "
                        "be at the same paths on every node; shards are written here. Same output as without --ray")
    p.add_argument("--val-count", type=_non_negative, default=val_default,
                   help="foregrounds held out of training for val-* shards" +
                   (" (default: max(2, count//6))" if val_default is None else f" (default {val_default})"))
    p.add_argument("--test-composites", type=_non_negative, default=test_default,
                   help=f"backgrounds per test foreground for test-* shards (default {test_default})")
    p.add_argument("--train-composites", type=_non_negative, default=0,
                   help="also write train-* shards: each training foreground on K fixed backgrounds (default 0)")
    p.add_argument("--skip-bad", action="store_true",
                   help="skip bad input files (recorded under manifest 'skipped') instead of stopping")
    p.add_argument("--overwrite", action="store_true",
                   help="delete an existing dataset in --out made with different options")
    p.add_argument("--encoding", choices=ENCODINGS, default=DEFAULT_ENCODING,
                   help="image members as png (PNG/JPEG, small; default) or raw (.npy uint8 pixels, the same "
                        "pixels, several times larger, decoded at memcpy cost)")


def _location(text: str) -> Path | str:
    """A local path, or an `s3://` URI kept as text (a Path would collapse its double slash)."""
    return text if object_store.is_remote(text) else Path(text)


def _fraction(text: str) -> float:
    v = float(text)
    if not 0 < v < 10:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 10), got {text}")
    return v


def _add_trimap_parser(sub) -> None:
    from .trimaps import DEFAULT_FRACTION, DEFAULT_MIN_RADIUS

    p = sub.add_parser(
        "trimap", help="trimaps (PNG 0/128/255) from alpha mattes or coarse binary masks, one file or a folder",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Make trimaps for `jobs predict` (or any matting tool): 8-bit grey PNGs holding 0/128/255\n"
                    "(background / unknown / foreground).\n\n"
                    "  --alpha: 255 = alpha==255 eroded, 0 = alpha==0 eroded, 128 = the rest (every soft pixel\n"
                    "           is unknown, and the band reaches the radius into both solid regions)\n"
                    "  --mask:  a coarse binary mask (0/1, 0/255, or lossy within +-16): 255 = mask eroded,\n"
                    "           0 = outside eroded, 128 = a band of 2r+1 px on the mask boundary\n\n"
                    "Band radius r (a disk; the image border does not erode): --radius PX, or by default\n"
                    f"  r = max(--min-radius, round(--radius-fraction * sqrt(A))), A = foreground area in px\n"
                    "  (alpha: sum(alpha)/255; mask: mask pixels), i.e. a fixed fraction of the object's size\n"
                    f"  (defaults {DEFAULT_FRACTION:g} and {DEFAULT_MIN_RADIUS}: 10 px for a 250x250-px object).\n\n"
                    "A folder gives one <name>.png per input image in the --out folder. An output is never an\n"
                    "input, and existing files are replaced only with --overwrite.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--alpha", type=Path, help="alpha matte file or folder of mattes (8 or 16 bit grey)")
    src.add_argument("--mask", type=Path, help="binary mask file or folder of masks")
    p.add_argument("--out", type=Path, required=True,
                   help="output PNG (file input; an existing folder gets <name>.png) or folder (folder input)")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--radius", type=_non_negative, default=None, help="fixed band radius in pixels")
    size.add_argument("--radius-fraction", type=_fraction, default=DEFAULT_FRACTION,
                      help=f"radius as a fraction of sqrt(foreground area) (default {DEFAULT_FRACTION:g})")
    p.add_argument("--min-radius", type=_non_negative, default=DEFAULT_MIN_RADIUS,
                   help=f"smallest scaled radius in pixels (default {DEFAULT_MIN_RADIUS}; ignored with --radius)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files (never an input)")
    p.set_defaults(func=cmd_trimap)


def _add_layout_parsers(sub) -> None:
    """One subcommand per public dataset layout (data_prep/layouts.py), all with --root and the shared options."""
    from .layouts import LAYOUTS

    for lay in LAYOUTS.values():
        fg_how = ("foregrounds are estimated from each photo and its alpha (multi-level method, pymatting) and\n"
                  "recorded as estimated; --test-count N holds N photos out as real test images"
                  + (" with their trimaps" if lay.name == "aim500" else "")) if lay.images else \
            "foregrounds are composited on --bg backgrounds for val/test/train composites"
        p = sub.add_parser(lay.name, help=f"{lay.title} -> shards", formatter_class=argparse.RawDescriptionHelpFormatter,
                           description=f"{lay.title}. Expected tree under --root ([...] optional):\n\n  {lay.tree}\n\n"
                                       f"Fg shards hold the training pairs; {fg_how}.\nReleased test splits "
                                       "become test-* shards (with their trimaps where released).")
        p.add_argument("--root", type=Path, required=True, help=f"{lay.title} root folder")
        p.add_argument("--bg", type=Path, required=not lay.own_backgrounds, default=None,
                       help="background images, e.g. COCO train2014" +
                            (f" (default: --root/{lay.own_backgrounds})" if lay.own_backgrounds else ""))
        p.add_argument("--test-count", type=_non_negative, default=0,
                       help="training pairs held out for test-* shards (default 0)")
        p.add_argument("--min-size", type=_positive, default=32, help="smallest accepted image side in px (default 32)")
        p.add_argument("--val-composites", type=_positive, default=2, help="backgrounds per val foreground (default 2)")
        if lay.images:
            p.add_argument("--photos", action="store_true",
                           help="also write photo-* shards: each training photo as it is, with its alpha, a trimap "
                                "from the alpha and the estimated fg and bg; trained on without re-compositing "
                                "(training config data.photo_ratio)")
        _add_writer_options(p, val_default=0, test_default=lay.test_composites)
        p.set_defaults(func=cmd_layout, layout=lay.name)


def build_parser() -> argparse.ArgumentParser:
    from .synthetic import FAMILIES

    parser = argparse.ArgumentParser(prog="python -m data_prep",
                                     description="Raw matting data -> verified WebDataset shards (+ DALI .idx).")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-v info, -vv debug)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("synthetic", help="built-in deterministic procedural matting data (demos, tests)",
                       description="Write fg, bg, val and test shards of procedural matting data. --count N "
                                   "training foregrounds; val and test foregrounds are extra, held-out ones "
                                   "(defaults max(2, N//6) x 2 backgrounds and max(2, N//4) x --test-composites); "
                                   "max(8, N) backgrounds.")
    p.add_argument("--count", type=_positive, required=True, help="training foregrounds (fg shards)")
    p.add_argument("--size", type=_min_size_64, default=512, help="long side in pixels (default 512, min 64)")
    p.add_argument("--test-count", type=_non_negative, default=None,
                   help="held-out test foregrounds (default max(2, count//4))")
    p.add_argument("--families", type=_family_weights, default=None, metavar="NAME=WEIGHT,...",
                   help="mix of foreground families for every split, e.g. object=3,person=1,fur=1 (families left "
                        "out get 0; names: " + ", ".join(f[0] for f in FAMILIES) + "; default: "
                        + ",".join(f"{f[0]}={f[2]:g}" for f in FAMILIES) + ")")
    _add_writer_options(p, val_default=None, test_default=2)
    p.set_defaults(func=cmd_synthetic)

    p = sub.add_parser("folders", help="fg/alpha/bg folders (matched by file stem) -> shards",
                       description="Foregrounds and alphas matched by file stem, backgrounds any images. Writes fg "
                                   "and bg shards; --val-count N holds N foregrounds out for val-* composites; "
                                   "--test-composites K writes test-* composites (of --test-count held-out "
                                   "foregrounds, or of all foregrounds when --test-count is 0). Trimaps come from "
                                   "the true alpha with an unknown band of 1.5% of the long side (min 3 px).")
    p.add_argument("--fg", type=Path, required=True, help="foreground images (RGB; RGBA/palette/grey converted)")
    p.add_argument("--alpha", type=Path, required=True, help="alpha mattes, same stems as --fg (8 or 16 bit)")
    p.add_argument("--bg", type=Path, required=True, help="background images")
    p.add_argument("--test-count", type=_non_negative, default=0,
                   help="foregrounds held out for the test composites (default 0: use all foregrounds)")
    p.add_argument("--min-size", type=_positive, default=32, help="smallest accepted image side in px (default 32)")
    p.add_argument("--val-composites", type=_positive, default=2, help="backgrounds per val foreground (default 2)")
    _add_writer_options(p, val_default=0, test_default=0)
    p.set_defaults(func=cmd_folders)

    p = sub.add_parser("composition1k", help="Adobe Composition-1k layout + backgrounds (e.g. COCO) -> shards",
                       description="Training_set/{fg,alpha} (or the 'Adobe-licensed images' variant, plus Other/) "
                                   "-> fg shards; Test_set/{merged,alpha,trimaps} (1000 composites <fg>_<i>.png "
                                   "over 50 alphas), or the shipped Test_set composited on --test-bg, -> test "
                                   "shards; --bg images -> bg shards.")
    p.add_argument("--root", type=Path, required=True, help="Composition-1k root (holds Training_set, Test_set)")
    p.add_argument("--bg", type=Path, required=True, help="background images, e.g. COCO train2014")
    p.add_argument("--test-bg", type=Path, default=None,
                   help="PASCAL VOC JPEGImages: make the test composites of a Test_set as Adobe ships it (no merged/) "
                        "from its test_fg_names.txt / test_bg_names.txt")
    p.add_argument("--min-size", type=_positive, default=32, help="smallest accepted image side in px (default 32)")
    p.add_argument("--val-composites", type=_positive, default=2, help="backgrounds per val foreground (default 2)")
    _add_writer_options(p, val_default=0, test_default=0)
    p.set_defaults(func=cmd_composition1k)

    _add_layout_parsers(sub)

    p = sub.add_parser("verify", help="check every shard against manifest.json and the data contract",
                       description="Sizes and sha256 vs manifest.json, decode every member, fg/alpha sizes, "
                                   "trimap values, DALI .idx. Exit 0 only if all is well.")
    p.add_argument("dir", type=_location, help="dataset directory or s3://bucket/prefix")
    p.add_argument("--workers", type=_positive, default=os.cpu_count() or 1, help="processes (default CPU count)")
    p.set_defaults(func=cmd_verify)

    _add_trimap_parser(sub)

    p = sub.add_parser("stats", help="samples per kind, sizes, unknown-region fraction; optional preview sheet")
    p.add_argument("dir", type=_location, help="dataset directory or s3://bucket/prefix")
    p.add_argument("--preview", type=Path, default=None, help="write a contact sheet PNG here")
    p.add_argument("--rows", type=_positive, default=8, help="foregrounds in the preview (default 8)")
    p.add_argument("--json", action="store_true", help="print the statistics as JSON")
    p.set_defaults(func=cmd_stats)
    return parser


def _executor(args: argparse.Namespace):
    """The Ray executor for --ray, else None (build's local process pool of --workers)."""
    if args.ray is None:
        return None
    from .ray_executor import RayExecutor

    return RayExecutor(args.ray or None)


def _report(result: BuildResult, out: Path) -> int:
    print(f"{out}: {result.summary()}")
    return 0


def cmd_synthetic(args: argparse.Namespace) -> int:
    from . import encoders  # noqa: F401 - registers the sample encoders
    from .plans import synthetic_plan, synthetic_split_sizes
    from .synthetic import FAMILIES, preload_photos

    n, v, t = synthetic_split_sizes(args.count, args.val_count, args.test_count)
    options = {"command": "synthetic", "count": n, "size": args.size, "seed": args.seed, "val_count": v,
               "test_count": t, "test_composites": args.test_composites, "val_composites": 2,
               "train_composites": args.train_composites, "shard_size": args.shard_size,
               "encoding": args.encoding}
    if args.families is not None:
        options["families"] = dict(zip((f[0] for f in FAMILIES), args.families))
    preload_photos()
    plan = synthetic_plan(args.count, args.size, args.seed, v, t, args.test_composites, args.train_composites,
                          families=args.families)
    result = build_at(args.out, options, plan, workers=args.workers, shard_bytes=args.shard_size,
                   skip_bad=args.skip_bad, overwrite=args.overwrite, encoding=args.encoding, executor=_executor(args))
    return _report(result, args.out)


def _resolve_bad(bad: list[BadInputError], skip_bad: bool) -> list[dict]:
    """Listing-time bad inputs: stop on the first (default) or turn them into manifest 'skipped' records."""
    if bad and not skip_bad:
        raise bad[0]
    for b in bad:
        log.warning("skipping %s: %s", b.path, b.problem)
    return [{"path": b.path, "problem": b.problem, "kind": "input"} for b in bad]


def _file_build(args: argparse.Namespace, command: str, inputs, test_count: int, extra_opts: dict,
                extra_manifest: dict | None = None, photos: bool = False) -> int:
    from . import encoders  # noqa: F401 - registers the sample encoders
    from .plans import folder_plan

    skipped = _resolve_bad(inputs.bad, args.skip_bad)
    plan = folder_plan(inputs, seed=args.seed, min_size=args.min_size, val_count=args.val_count,
                       test_count=test_count, test_composites=args.test_composites,
                       val_composites=args.val_composites, train_composites=args.train_composites,
                       photos=photos)
    if photos:
        extra_opts = {**extra_opts, "photos": True}
    options = {"command": command, **extra_opts, "seed": args.seed, "min_size": args.min_size,
               "val_count": args.val_count, "test_count": test_count, "test_composites": args.test_composites,
               "val_composites": args.val_composites, "train_composites": args.train_composites,
               "shard_size": args.shard_size, "encoding": args.encoding}
    result = build_at(args.out, options, plan, workers=args.workers, shard_bytes=args.shard_size, encoding=args.encoding,
                   skip_bad=args.skip_bad, overwrite=args.overwrite, planning_skipped=skipped,
                   extra_manifest=extra_manifest, executor=_executor(args))
    return _report(result, args.out)


def cmd_folders(args: argparse.Namespace) -> int:
    from .plans import folder_inputs

    inputs = folder_inputs(args.fg, args.alpha, args.bg)
    return _file_build(args, "folders", inputs, args.test_count,
                       {"fg": str(args.fg.resolve()), "alpha": str(args.alpha.resolve()), "bg": str(args.bg.resolve())})


def cmd_composition1k(args: argparse.Namespace) -> int:
    from .plans import composition1k_inputs

    inputs = composition1k_inputs(args.root, args.bg, args.test_bg)
    if args.test_composites and (inputs.test_merged or inputs.test_to_composite):
        log.warning("--test-composites is ignored: the Composition-1k Test_set provides the test composites")
    return _file_build(args, "composition1k", inputs, 0,
                       {"root": str(args.root.resolve()), "bg": str(args.bg.resolve()),
                        **({"test_bg": str(args.test_bg.resolve())} if args.test_bg else {})})


def cmd_layout(args: argparse.Namespace) -> int:
    """Any public dataset layout: read it (layouts.py), then plan and build like `folders`."""
    from .foreground import method_record
    from .layouts import LAYOUTS

    lay = LAYOUTS[args.layout]
    inputs = lay.read(args.root, args.bg, [])
    extra = {"foreground_estimation": method_record()} if inputs.images else None
    opts = {"root": str(args.root.resolve()), "bg": str(args.bg.resolve()) if args.bg else None,
            **({"fg_estimated": method_record()["method"]} if inputs.images else {})}
    return _file_build(args, lay.name, inputs, args.test_count, opts, extra, photos=getattr(args, "photos", False))


def cmd_trimap(args: argparse.Namespace) -> int:
    from .trimap_files import make_trimaps
    from .trimaps import BandRadius

    mode, source = ("alpha", args.alpha) if args.alpha is not None else ("mask", args.mask)
    band = BandRadius(radius=args.radius, fraction=args.radius_fraction, min_radius=args.min_radius)
    done = make_trimaps(source, args.out, mode, band, overwrite=args.overwrite)
    for path, how in done[:20]:  # a folder's full list is in the -v log
        print(f"{path}: {how}")
    print(f"wrote {len(done)} trimap(s) from {mode} {'folder' if source.is_dir() else 'file'} {source}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from .verify import verify_dataset

    if object_store.is_remote(args.dir):
        from .remote_copy import local_copy, to_uri

        with local_copy(args.dir) as local:
            problems = [(to_uri(p, local, args.dir), to_uri(m, local, args.dir))
                        for p, m in verify_dataset(local, workers=args.workers)]
    else:
        problems = verify_dataset(args.dir, workers=args.workers)
    if not problems:
        print(f"{args.dir}: OK")
        return 0
    print(f"{args.dir}: {len(problems)} problem(s)")
    for path, problem in problems:
        print(f"  {path}: {problem}")
    return 1


def cmd_stats(args: argparse.Namespace) -> int:
    import json

    from .stats import compute_stats, write_preview

    if object_store.is_remote(args.dir):
        from .remote_copy import local_copy

        with local_copy(args.dir) as local:
            st = {**compute_stats(local), "dataset": args.dir}
            if args.preview:
                print(f"preview: {write_preview(local, args.preview, rows=args.rows)}")
                args.preview = None
    else:
        st = compute_stats(args.dir)
    if args.json:
        print(json.dumps(st, indent=1))
    else:
        print(f"{args.dir}: {st['encoding']} shards, {st['skipped']} inputs skipped at preparation")
        for kind, e in st["kinds"].items():
            line = f"  {kind:5s} {e['samples']:7d} samples {e['shards']:4d} shards {e['bytes'] / 1e6:9.1f} MB"
            if "width" in e:
                line += f"  w {e['width'][0]}-{e['width'][1]} h {e['height'][0]}-{e['height'][1]}"
            if "unknown_fraction_mean" in e:
                line += (f"  unknown {e['unknown_fraction_mean']:.3f}"
                         f"  soft alpha {e['soft_alpha_fraction_mean']:.3f}")
            print(line)
    if args.preview:
        print(f"preview: {write_preview(args.dir, args.preview, rows=args.rows)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except BadInputError as exc:
        print(f"error: bad input: {exc} (fix or remove the file, or pass --skip-bad to skip it)", file=sys.stderr)
        return 2
    except (DatasetExistsError, InputError, ManifestError, object_store.ObjectStoreError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: completed shards are kept, re-run the same command to resume", file=sys.stderr)
        return 130
    except OSError as exc:  # --out under a file, a read-only or full file system, an unwritable --preview path
        where = exc.filename or "?"
        print(f"error: {where}: {exc.strerror or exc} (completed shards are kept; fix the path or free space, then "
              "re-run the same command to resume)", file=sys.stderr)
        return 2
