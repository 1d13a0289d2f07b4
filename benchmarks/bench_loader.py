"""Training-loader throughput: the DALI pipeline (pipeline/) vs a PyTorch DataLoader + OpenCV baseline.

Same machine, same cores, same shards, same recipe, one run each:
    .venv/bin/python benchmarks/bench_loader.py [--data DIR] [--crops 512 320] [--batches 12] [--workers 2]
Without --data a synthetic set (`python -m data_prep synthetic --size 1024`) is written once to a cache folder.
Prints samples/s per loader and crop, and the ratio.
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


def ensure_data(path: Path, count: int, size: int) -> Path:
    if not (path / "manifest.json").exists():
        subprocess.run([sys.executable, "-m", "data_prep", "synthetic", "--out", str(path), "--count", str(count),
                        "--size", str(size), "--seed", "0"], cwd=REPO, check=True)
    return path


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


def time_batches(iterable, batches: int) -> tuple[float, float]:
    """(samples/s, CPU ms/sample) over `batches` batches after one warm-up batch (build / worker start excluded).

    CPU ms per sample is the cost independent of how much of the shared machine we got."""
    it = iter(iterable)
    next(it)
    cpu0, start = cpu_seconds(), time.perf_counter()
    n = 0
    for _ in range(batches):
        b = next(it)
        n += b["image"].shape[0]
    wall, cpu = time.perf_counter() - start, cpu_seconds() - cpu0
    return n / wall, 1000 * cpu / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "a2u_bench_loader_1024")
    ap.add_argument("--count", type=int, default=16)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--crops", type=int, nargs="+", default=[512, 320])
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--batches", type=int, default=12)
    ap.add_argument("--workers", type=int, default=min(len(os.sched_getaffinity(0)), 4),
                    help="DALI threads and DataLoader worker processes (same cores for both)")
    args = ap.parse_args()
    data = ensure_data(args.data, args.count, args.size)
    print(f"data {data} | cores {len(os.sched_getaffinity(0))} | threads/workers {args.workers} | "
          f"batch {args.batch_size} x {args.batches} timed batches | torch {torch.__version__}")
    iters = args.batches + 1
    for crop in args.crops:
        dali = pipeline.build_train_loader(data, args.batch_size, crop, num_threads=args.workers,
                                           iterations_per_epoch=iters)
        d, d_cpu = time_batches(dali, args.batches)
        del dali
        base = build_baseline_loader(str(data), args.batch_size, crop, iters * args.batch_size, args.workers)
        b, b_cpu = time_batches(base, args.batches)
        del base
        print(f"crop {crop}: DALI {d:.1f} samples/s, {d_cpu:.0f} CPU-ms/sample | DataLoader+OpenCV {b:.1f} samples/s, "
              f"{b_cpu:.0f} CPU-ms/sample | speed ratio {d / b:.2f}x, CPU-cost ratio {b_cpu / d_cpu:.2f}x",
              flush=True)


if __name__ == "__main__":
    main()
