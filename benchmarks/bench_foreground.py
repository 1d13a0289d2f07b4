"""Cost of shard-time foreground estimation (pymatting.estimate_foreground_ml) per megapixel.

Uses a real-dev photo and alpha resized to each size (timing only; nothing is trained on it). The first call
compiles numba code and is reported separately.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from data_prep.foreground import estimate_foreground  # noqa: E402

REAL_DEV = Path(__file__).resolve().parents[1] / "datasets" / "real-dev"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--name", default="guineafowl")
    ap.add_argument("--sides", type=int, nargs="+", default=[512, 1024])
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    image = Image.open(REAL_DEV / f"merged/{a.name}_0.png").convert("RGB")
    alpha = Image.open(REAL_DEV / f"alpha/{a.name}.png").convert("L")
    t = time.perf_counter()
    estimate_foreground(np.zeros((64, 64, 3), np.uint8), np.zeros((64, 64), np.uint8))
    print(f"first call (numba compile or cache load): {time.perf_counter() - t:.2f} s; cores {os.cpu_count()}")
    for side in a.sides:
        img = np.asarray(image.resize((side, side), Image.BICUBIC))
        al = np.asarray(alpha.resize((side, side), Image.BICUBIC))
        times = []
        for _ in range(a.repeats):
            t = time.perf_counter()
            estimate_foreground(img, al)
            times.append(time.perf_counter() - t)
        mp = side * side / 1e6
        print(f"{side}x{side} ({mp:.2f} MP): best {min(times):.2f} s, median {sorted(times)[len(times) // 2]:.2f} s"
              f" -> {min(times) / mp:.2f} s/MP (best)")


if __name__ == "__main__":
    main()
