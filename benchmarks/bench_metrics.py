"""Time of `model.metrics.evaluate` (and of each metric) on a synthetic matte, default 2000×2000.

    .venv/bin/python benchmarks/bench_metrics.py --size 2000 --repeats 3
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model import metrics  # noqa: E402


def synthetic(size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A smooth ground-truth matte, a noisy prediction of it, and the trimap of its 0 / 255 / mixed pixels."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    alpha = np.clip(np.sin(xx / 50.0) * np.cos(yy / 70.0) * 400 + 128, 0, 255).astype(np.uint8)
    pred = np.clip(alpha.astype(int) + rng.integers(-20, 21, (size, size)), 0, 255).astype(np.uint8)
    trimap = np.full((size, size), 128, np.uint8)
    trimap[alpha == 0] = 0
    trimap[alpha == 255] = 255
    return pred, alpha, trimap


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    pred, alpha, trimap = synthetic(args.size)
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, numpy {np.__version__}, "
          f"{args.size}×{args.size}, unknown fraction {(trimap == 128).mean():.2f}, best of {args.repeats}")
    for name, fn in (("evaluate", metrics.evaluate), ("sad", metrics.sad), ("mse", metrics.mse),
                     ("gradient_error", metrics.gradient_error), ("connectivity_error", metrics.connectivity_error)):
        seconds = best_of(args.repeats, lambda fn=fn: fn(pred, alpha, trimap))
        print(f"{name:20s} {seconds:7.3f} s")
    print("scores", metrics.evaluate(pred, alpha, trimap))


if __name__ == "__main__":
    main()
