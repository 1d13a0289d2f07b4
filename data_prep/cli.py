"""Command line: `python -m data_prep {folders,composition1k,synthetic,verify,stats} ...` (`--help` on each)."""
from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from pathlib import Path

from .build import BuildResult, DatasetExistsError, build
from .images import BadInputError

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


def _positive(text: str) -> int:
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def _non_negative(text: str) -> int:
    v = int(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {v}")
    return v


def _add_writer_options(p: argparse.ArgumentParser, *, val_default: int | None, test_default: int | None) -> None:
    p.add_argument("--out", type=Path, required=True, help="output dataset directory")
    p.add_argument("--seed", type=int, default=0, help="seed for shuffling, splits and composite backgrounds")
    p.add_argument("--shard-size", type=parse_size, default=parse_size(DEFAULT_SHARD_SIZE),
                   help=f"target shard size (default {DEFAULT_SHARD_SIZE}; K/M/G = 1024-based)")
    p.add_argument("--workers", type=_positive, default=os.cpu_count() or 1,
                   help="encoding processes (default: CPU count)")
    p.add_argument("--val-count", type=_non_negative, default=val_default,
                   help="foregrounds held out of training for val-* shards" +
                   (" (default: max(2, count//6))" if val_default is None else f" (default {val_default})"))
    p.add_argument("--test-composites", type=_non_negative, default=test_default,
                   help="backgrounds per test foreground for test-* shards")
    p.add_argument("--train-composites", type=_non_negative, default=0,
                   help="also write train-* shards: each training foreground on K fixed backgrounds (default 0)")
    p.add_argument("--skip-bad", action="store_true",
                   help="skip bad input files (recorded under manifest 'skipped') instead of stopping")
    p.add_argument("--overwrite", action="store_true",
                   help="delete an existing dataset in --out made with different options")


def build_parser() -> argparse.ArgumentParser:
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
    p.add_argument("--size", type=_positive, default=512, help="long side in pixels (default 512)")
    p.add_argument("--test-count", type=_non_negative, default=None,
                   help="held-out test foregrounds (default max(2, count//4))")
    _add_writer_options(p, val_default=None, test_default=2)
    p.set_defaults(func=cmd_synthetic)
    return parser


def _report(result: BuildResult, out: Path) -> int:
    print(f"{out}: {result.summary()}")
    return 0


def cmd_synthetic(args: argparse.Namespace) -> int:
    from . import encoders  # noqa: F401 - registers the sample encoders
    from .plans import synthetic_plan, synthetic_split_sizes

    n, v, t = synthetic_split_sizes(args.count, args.val_count, args.test_count)
    options = {"command": "synthetic", "count": n, "size": args.size, "seed": args.seed, "val_count": v,
               "test_count": t, "test_composites": args.test_composites, "val_composites": 2,
               "train_composites": args.train_composites, "shard_size": args.shard_size}
    plan = synthetic_plan(args.count, args.size, args.seed, v, t, args.test_composites, args.train_composites)
    result = build(args.out, options, plan, workers=args.workers, shard_bytes=args.shard_size,
                   skip_bad=args.skip_bad, overwrite=args.overwrite)
    return _report(result, args.out)


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
    except DatasetExistsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: completed shards are kept, re-run the same command to resume", file=sys.stderr)
        return 130
