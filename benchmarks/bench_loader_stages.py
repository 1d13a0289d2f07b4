"""Where the DALI training loader's CPU time goes: CPU-ms per sample of the whole loader under option ablations, and of
its three stages run one after the other (geometry graph, torch trimap/crop step, finish graph + conversion).

    .venv/bin/python benchmarks/bench_loader_stages.py [--data DIR] [--crop 512] [--batches 10] [--threads 1]

CPU time of this process (user + system, all threads) per sample, after one warm-up batch; it is steadier than wall time
on a shared machine, but still moves with the load of other processes (cache and memory contention), so compare runs
made back to back. Data: the bench_loader.py synthetic set (`python -m data_prep synthetic --size 1024`).
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

import pipeline  # noqa: E402
from formats.manifest import MANIFEST  # noqa: E402
from pipeline.loader import single_torch_thread  # noqa: E402

ABLATIONS = ({}, {"hsv_jitter": False}, {"p_combine": 0.0}, {"p_combine": 0.0, "hsv_jitter": False})


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def whole_loader(data: Path, crop: int, batches: int, threads: int, options: dict) -> tuple[float, float]:
    """(CPU-ms/sample, samples/s) of the loader as the training loop sees it."""
    loader = pipeline.build_train_loader(data, 8, crop, num_threads=threads, iterations_per_epoch=batches + 1,
                                         **options)
    it = iter(loader)
    next(it)
    c0, t0 = cpu_s(), time.perf_counter()
    for _ in range(batches):
        next(it)
    n = 8 * batches
    return 1000 * (cpu_s() - c0) / n, n / (time.perf_counter() - t0)


def stages(data: Path, crop: int, batches: int, threads: int) -> dict[str, float]:
    """CPU-ms/sample of each stage, run in sequence on the same batches (no overlap between them)."""
    loader = pipeline.TrainLoader(data, 8, crop, num_threads=threads, iterations_per_epoch=batches + 1)
    loader._start_geometry(0)
    loader._geometry.run()                                   # warm-up batch (iteration 0)
    n, out = 8 * batches, {}
    c0 = cpu_s()
    geo = [loader._geometry.run() for _ in range(batches)]  # iterations 1..batches
    out["geometry graph"] = 1000 * (cpu_s() - c0) / n
    plans = [loader.sampler.plan(g) for g in range(1, batches + 1)]
    c0 = cpu_s()
    with single_torch_thread(loader.device):
        steps = [loader._crop_step(p, *o) for p, o in zip(plans, geo)]
    out["torch trimap/crop step"] = 1000 * (cpu_s() - c0) / n
    c0 = cpu_s()
    with single_torch_thread(loader.device):
        for feeds, trimaps in steps:
            loader._run_finish(feeds, trimaps)
    out["finish graph + conversion"] = 1000 * (cpu_s() - c0) / n
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "a2u_bench_loader_1024")
    ap.add_argument("--crop", type=int, default=512)
    ap.add_argument("--batches", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1, help="DALI threads per graph")
    args = ap.parse_args()
    if not (args.data / MANIFEST).exists():
        sys.exit(f"{args.data}: no dataset; run benchmarks/bench_loader.py once (it writes it) or pass --data")
    print(f"data {args.data} | crop {args.crop} | batch 8 x {args.batches} | DALI threads {args.threads} | "
          f"torch {torch.__version__} | load {os.getloadavg()[0]:.2f}")
    for options in ABLATIONS:
        ms, rate = whole_loader(args.data, args.crop, args.batches, args.threads, options)
        print(f"loader {options or 'default'}: {ms:.1f} CPU-ms/sample, {rate:.1f} samples/s")
    for name, ms in stages(args.data, args.crop, args.batches, args.threads).items():
        print(f"stage {name}: {ms:.1f} CPU-ms/sample")


if __name__ == "__main__":
    main()
