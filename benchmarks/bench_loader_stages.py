"""Where the DALI training loader's CPU time goes: CPU-ms per sample of the whole loader under option ablations, and of
its three stages run one after the other (geometry graph, torch trimap/crop step, finish graph + conversion), and
the crop step alone in the loader's thread and in crop worker processes (samples/s, and the loader thread's share).

    .venv/bin/python benchmarks/bench_loader_stages.py [--data DIR] [--crop 512] [--batches 10] [--threads 1]
        [--crop-workers 1 2]

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
sys.path.insert(0, str(REPO / "benchmarks"))

import torch  # noqa: E402

import pipeline  # noqa: E402
from formats.manifest import MANIFEST  # noqa: E402
from crop_timing import time_crop_step  # noqa: E402
from pipeline.crop_step import crop_batch, single_torch_thread  # noqa: E402
from pipeline.loader import frame_views  # noqa: E402

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


def _geometry_batches(loader, batches: int) -> list[tuple]:
    """(plan, frames1, frames2) of iterations 1..batches (iteration 0 is the warm-up), the frames copied out of
    DALI's buffers (which its next runs reuse)."""
    loader._start_geometry(0)
    out = []
    for g in range(batches + 1):
        a1, a2 = loader._geometry.run()
        plan = loader._inflight.pop(g)
        out.append((plan, [f.clone() for f in frame_views(a1)], [f.clone() for f in frame_views(a2)]))
    return out[1:]


def stages(data: Path, crop: int, batches: int, threads: int) -> dict[str, float]:
    """CPU-ms/sample of each stage, run in sequence on the same batches (no overlap between them)."""
    loader = pipeline.TrainLoader(data, 8, crop, num_threads=threads, iterations_per_epoch=batches + 1)
    n, out = 8 * batches, {}
    c0 = cpu_s()
    geo = _geometry_batches(loader, batches)
    out["geometry graph (+ frame copies)"] = 1000 * (cpu_s() - c0) / n
    c0 = cpu_s()
    with single_torch_thread(loader.device):
        steps = [loader._feeds(p, crop_batch(*loader.crop_args(p, f1, f2))) for p, f1, f2 in geo]
    out["torch trimap/crop step"] = 1000 * (cpu_s() - c0) / n
    c0 = cpu_s()
    with single_torch_thread(loader.device):
        for feeds, trimaps in steps:
            loader._run_finish(feeds, trimaps)
    out["finish graph + conversion"] = 1000 * (cpu_s() - c0) / n
    return out


def crop_stage(data: Path, crop: int, batches: int, threads: int, workers: list[int]) -> list[tuple[int, float, float]]:
    """`crop_timing.time_crop_step` on the same geometry-graph batches (see there)."""
    loader = pipeline.TrainLoader(data, 8, crop, num_threads=threads, iterations_per_epoch=batches + 1)
    return time_crop_step([loader.crop_args(*g) for g in _geometry_batches(loader, batches)], workers)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "a2u_bench_loader_1024")
    ap.add_argument("--crop", type=int, default=512)
    ap.add_argument("--batches", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1, help="DALI threads per graph")
    ap.add_argument("--crop-workers", type=int, nargs="*", default=[1, 2],
                    help="crop worker process counts to time the crop step with (besides in-thread)")
    ap.add_argument("--parts", nargs="+", default=["loader", "stages", "crop"], choices=["loader", "stages", "crop"],
                    help="what to time: the whole loader under the ablations, the stages in sequence, the crop step")
    args = ap.parse_args()
    if not (args.data / MANIFEST).exists():
        sys.exit(f"{args.data}: no dataset; run benchmarks/bench_loader.py once (it writes it) or pass --data")
    print(f"data {args.data} | crop {args.crop} | batch 8 x {args.batches} | DALI threads {args.threads} | "
          f"torch {torch.__version__} | load {os.getloadavg()[0]:.2f}")
    for options in ABLATIONS if "loader" in args.parts else ():
        ms, rate = whole_loader(args.data, args.crop, args.batches, args.threads, options)
        print(f"loader {options or 'default'}: {ms:.1f} CPU-ms/sample, {rate:.1f} samples/s")
    for name, ms in stages(args.data, args.crop, args.batches, args.threads).items() if "stages" in args.parts else ():
        print(f"stage {name}: {ms:.1f} CPU-ms/sample")
    crop_rows = crop_stage(args.data, args.crop, args.batches, args.threads, args.crop_workers) \
        if "crop" in args.parts else []
    for workers, rate, ms in crop_rows:
        where = f"{workers} crop worker(s)" if workers else "in the loader's thread"
        print(f"crop step alone, {where}: {rate:.1f} samples/s, {ms:.2f} CPU-ms/sample on the loader's thread")


if __name__ == "__main__":
    main()
