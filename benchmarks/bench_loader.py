"""Training-loader throughput: the DALI pipeline (pipeline/) vs a PyTorch DataLoader + OpenCV baseline.

Same machine, same cores, same shards, same recipe, one run each:
    .venv/bin/python benchmarks/bench_loader.py [--data DIR ...] [--encodings png raw] [--crops 512 320]
        [--batches 12] [--workers 2]
Without --data a synthetic set (`python -m data_prep synthetic --size 1024 --encoding E`) is written once per shard
encoding to a cache folder; with --data each directory is measured in the encoding its manifest records.
Prints, per dataset, its size on disk (bytes per sample of each shard kind), then per crop samples/s and CPU-ms per
sample of each loader, and the ratios; the load average is printed with every row (the box may be shared).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import psutil  # noqa: E402
import torch  # noqa: E402

import pipeline  # noqa: E402
from baseline_loader import build_baseline_loader  # noqa: E402
from formats.manifest import MANIFEST, read_manifest  # noqa: E402


def ensure_data(path: Path, count: int, size: int, encoding: str = "png") -> Path:
    """The cached synthetic benchmark set of one encoding (written once)."""
    if not (path / MANIFEST).exists():
        subprocess.run([sys.executable, "-m", "data_prep", "synthetic", "--out", str(path), "--count", str(count),
                        "--size", str(size), "--seed", "0", "--encoding", encoding], cwd=REPO, check=True)
    return path


def disk_report(path: Path) -> tuple[str, str]:
    """(encoding, 'kind: bytes/sample ...') of a dataset, from its manifest's shard sizes (tar headers included)."""
    m = read_manifest(path)
    parts = []
    for kind in ("fg", "bg", "val", "test", "train"):
        shards = m.shards_of(kind)
        n = sum(s["samples"] for s in shards)
        if n:
            parts.append(f"{kind} {sum(s['bytes'] for s in shards) / n / 1e6:.2f} MB/sample")
    total = sum(s["bytes"] for s in m.shards)
    return m.encoding, ", ".join(parts) + f"; all shards {total / 1e6:.1f} MB"


def load() -> str:
    return f"load {os.getloadavg()[0]:.2f}"


def cpu_seconds() -> float:
    """CPU time (user + system) of this process and its live children (the DataLoader workers)."""
    me = psutil.Process()
    total = sum(me.cpu_times()[:2])
    for child in me.children(recursive=True):
        try:
            total += sum(child.cpu_times()[:2])
        except psutil.NoSuchProcess:
            pass
    return total


LOOKAHEAD = 6  # batches past the timed ones, so both loaders end the timed span with their prefetch queues full


def settle(timeout: float = 10.0, step: float = 0.25) -> None:
    """Wait until this process tree is (nearly) idle: the loaders' workers have filled their prefetch queues.

    Both loaders compute batches ahead (DataLoader: `prefetch_factor` per worker; DALI: prefetch queue and the finish
    helper), so CPU time read while they are busy counts work that belongs to other batches. Reading it when idle,
    with equally full queues at both ends of the timed span, counts exactly the timed batches' work."""
    end = time.perf_counter() + timeout
    last = cpu_seconds()
    while time.perf_counter() < end:
        time.sleep(step)
        now = cpu_seconds()
        if now - last < 0.02 * step:
            return
        last = now


def time_batches(iterable, batches: int) -> tuple[float, float]:
    """(samples/s, CPU ms/sample) over `batches` batches after one warm-up batch (build / worker start excluded).

    `iterable` must hold at least LOOKAHEAD batches more than warm-up + `batches`. CPU ms per sample is the cost
    independent of how much of the shared machine we got; samples/s counts from full queues, so it is optimistic
    by up to the prefetch depth over `batches` (use 30 or more)."""
    it = iter(iterable)
    next(it)
    settle()
    cpu0, start = cpu_seconds(), time.perf_counter()
    n = 0
    for _ in range(batches):
        b = next(it)
        n += b["image"].shape[0]
    wall = time.perf_counter() - start
    settle()
    cpu = cpu_seconds() - cpu0
    return n / wall, 1000 * cpu / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, nargs="+", default=None,
                    help="dataset directories (default: the cached synthetic set of each --encodings)")
    ap.add_argument("--encodings", nargs="+", default=["png"], choices=["png", "raw"],
                    help="shard encodings of the cached synthetic sets (default png)")
    ap.add_argument("--cache", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "a2u_bench_loader_1024",
                    help="cache folder prefix of the synthetic sets (png: as is, raw: with suffix _raw)")
    ap.add_argument("--count", type=int, default=16)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--crops", type=int, nargs="+", default=[512, 320])
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--batches", type=int, default=12)
    ap.add_argument("--workers", type=int, default=min(len(os.sched_getaffinity(0)), 4),
                    help="DALI threads and DataLoader worker processes (same cores for both)")
    args = ap.parse_args()
    if args.data:
        datasets = list(args.data)
    else:
        datasets = [ensure_data(args.cache if e == "png" else Path(f"{args.cache}_{e}"), args.count, args.size, e)
                    for e in args.encodings]
    print(f"cores {len(os.sched_getaffinity(0))} | threads/workers {args.workers} | batch {args.batch_size} x "
          f"{args.batches} timed batches | torch {torch.__version__} | {load()}")
    iters = 1 + args.batches + LOOKAHEAD
    for data in datasets:
        encoding, disk = disk_report(data)
        print(f"data {data} | encoding {encoding} | {disk}", flush=True)
        for crop in args.crops:
            dali = pipeline.build_train_loader(data, args.batch_size, crop, num_threads=args.workers,
                                               iterations_per_epoch=iters)
            d, d_cpu = time_batches(dali, args.batches)
            del dali
            base = build_baseline_loader(str(data), args.batch_size, crop, iters * args.batch_size, args.workers)
            b, b_cpu = time_batches(base, args.batches)
            del base
            print(f"{encoding} crop {crop}: DALI {d:.1f} samples/s, {d_cpu:.0f} CPU-ms/sample | DataLoader+OpenCV "
                  f"{b:.1f} samples/s, {b_cpu:.0f} CPU-ms/sample | speed ratio {d / b:.2f}x, CPU-cost ratio "
                  f"{b_cpu / d_cpu:.2f}x | {load()}", flush=True)


if __name__ == "__main__":
    main()
