"""data_prep throughput: samples/s and MB/s of `synthetic` and `folders` with 1 and 2 worker processes.

Runs the real CLI in subprocesses (so start-up, pool start and writing are included) on fresh output
directories, and prints a Markdown table for benchmarks/RESULTS.md. Raw `folders` input is made once from the
synthetic generator (PNG/JPEG foregrounds, 8-bit alphas, JPEG backgrounds).

    .venv/bin/python benchmarks/bench_prep.py [--count 24] [--size 512] [--repeats 1]

On a shared, oversubscribed box the wall-clock rates measure the contention as much as the code; the CPU
seconds (user+sys of the CLI and its workers, from RUSAGE_CHILDREN) and samples per CPU-second do not.
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from formats.manifest import read_manifest  # noqa: E402


def _make_raw(root: Path, n_fg: int, n_bg: int, size: int) -> dict[str, Path]:
    from PIL import Image

    from data_prep.synthetic import make_background, make_foreground

    dirs = {d: root / d for d in ("fg", "alpha", "bg")}
    for d in dirs.values():
        d.mkdir(parents=True)
    for i in range(n_fg):
        fg, alpha, _ = make_foreground(11, i, size)
        Image.fromarray(fg).save(dirs["fg"] / (f"f{i:04d}.jpg" if i % 2 else f"f{i:04d}.png"), quality=95)
        Image.fromarray(alpha).save(dirs["alpha"] / f"f{i:04d}.png")
    for i in range(n_bg):
        Image.fromarray(make_background(11, i, size)).save(dirs["bg"] / f"b{i:04d}.jpg", quality=95)
    return dirs


def _cpu_children() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _run(args: list[str]) -> tuple[float, int, int, float]:
    """(wall s, samples, bytes, CPU s of the CLI and its worker processes)."""
    out = Path(args[args.index("--out") + 1])
    c0, t0 = _cpu_children(), time.perf_counter()
    subprocess.run([sys.executable, "-m", "data_prep", *args], cwd=REPO, check=True, capture_output=True)
    secs, cpu = time.perf_counter() - t0, _cpu_children() - c0
    shards = read_manifest(out).shards
    return secs, sum(s["samples"] for s in shards), sum(s["bytes"] for s in shards), cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=24, help="synthetic --count")
    ap.add_argument("--folders-count", type=int, default=96, help="foreground files for the folders run")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=1)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_prep_"))
    try:
        raw = _make_raw(tmp / "raw", a.folders_count, max(8, a.folders_count // 2), a.size)
        rows = []
        for name, base in (
            ("synthetic", ["synthetic", "--count", str(a.count), "--size", str(a.size)]),
            ("folders", ["folders", "--fg", str(raw["fg"]), "--alpha", str(raw["alpha"]), "--bg", str(raw["bg"]),
                         "--val-count", "4", "--test-count", "8", "--test-composites", "4"]),
        ):
            for workers in (1, 2):
                best = None
                for r in range(a.repeats):
                    out = tmp / f"{name}-{workers}-{r}"
                    res = _run(base + ["--out", str(out), "--workers", str(workers)])
                    best = res if best is None or res[0] < best[0] else best
                    shutil.rmtree(out)
                secs, n, nbytes, cpu = best
                rows.append((name, workers, n, nbytes, secs, cpu))
                print(f"{name:9s} workers={workers}: {n} samples, {nbytes / 1e6:.1f} MB in {secs:.2f} s "
                      f"(CPU {cpu:.2f} s) -> {n / secs:.2f} samples/s, {nbytes / 1e6 / secs:.2f} MB/s, "
                      f"{n / cpu:.2f} samples per CPU-s", flush=True)
        print()
        print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load average "
              f"{os.getloadavg()[0]:.1f} at the end; python {platform.python_version()}; size {a.size}; synthetic "
              f"--count {a.count}; folders {a.folders_count} fg files, --val-count 4 --test-count 8 "
              "--test-composites 4")
        print("| command | workers | samples | MB written | wall s (incl. start-up) | samples/s | MB/s | CPU s | "
              "samples/CPU-s |")
        print("|---|---|---|---|---|---|---|---|---|")
        for name, workers, n, nbytes, secs, cpu in rows:
            print(f"| {name} | {workers} | {n} | {nbytes / 1e6:.1f} | {secs:.2f} | {n / secs:.2f} | "
                  f"{nbytes / 1e6 / secs:.2f} | {cpu:.2f} | {n / cpu:.2f} |")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
