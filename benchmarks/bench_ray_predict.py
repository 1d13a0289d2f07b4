"""Images per second of `python -m jobs predict`: local (one process, torch's default threads, then one thread)
and `--ray` with 1 and 2 Ray Data actors (one CPU, so one torch thread, each) on a one-node Ray cluster started here with --cpus CPUs.

The net is a randomly initialised A2UMatting (seed 0, eval mode; the speed does not depend on the weights),
registered as version 1 of `a2u-matting` in a temporary sqlite MLflow store, loaded by every run as
models:/a2u-matting/1. Each command runs as a user runs it (a fresh process, fresh --out), so "wall" includes
start-up, connecting and model loading; "predict" is the images divided by the busiest actor's summed per-image
seconds from predictions.csv (the steady rate once actors are up).

    .venv/bin/python benchmarks/bench_ray_predict.py --image datasets/real-dev/merged \
        --trimap datasets/real-dev/trimaps --actors 1 2
"""
from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))


def register_random_net(store: Path) -> str:
    """A random A2UMatting registered in a sqlite store under `store`; returns the tracking URI."""
    import torch
    from mlflow.tracking import MlflowClient

    from jobs.tracking import ensure_experiment, log_and_register_model
    from model.net import A2UMatting

    uri = f"sqlite:///{store / 'mlflow.db'}"
    torch.manual_seed(0)
    net = A2UMatting().eval()
    run_id = MlflowClient(uri, uri).create_run(ensure_experiment(uri, "bench-ray-predict")).info.run_id
    log_and_register_model(net, uri, run_id, "a2u-matting", serialization_format="pickle")
    return uri


def timed(cmd: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return seconds


def busiest_actor_seconds(csv_path: Path) -> tuple[int, float, int]:
    """(mattes written, summed seconds of the busiest actor, actors seen) from predictions.csv."""
    busy: dict[str, float] = defaultdict(float)
    written = 0
    with open(csv_path, newline="") as f:
        for row in csv.DictReader(f):
            if row["status"] == "written":
                written += 1
                busy[row["worker"]] += float(row["seconds"])
    return written, max(busy.values()), len(busy)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image", type=Path, required=True)
    ap.add_argument("--trimap", type=Path, required=True)
    ap.add_argument("--actors", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--cpus", type=int, default=2, help="CPUs of the Ray node started here")
    ap.add_argument("--batch-size", type=int, default=2)
    args = ap.parse_args()
    import ray
    from ray.cluster_utils import Cluster

    from data_prep.ray_executor import LOCAL_RAY_ENV

    n = sum(1 for p in args.image.iterdir() if p.is_file())
    with tempfile.TemporaryDirectory(prefix="bench_ray_predict") as tmp:
        work = Path(tmp)
        uri = register_random_net(work)
        env = {**os.environ, **LOCAL_RAY_ENV, "MLFLOW_TRACKING_URI": uri, "PYTHONPATH": str(REPO_ROOT)}
        base = [sys.executable, "-m", "jobs", "predict", "--model", "models:/a2u-matting/1", "--image",
                str(args.image.resolve()), "--trimap", str(args.trimap.resolve())]
        for threads in ("default", "1"):  # torch's default (one per core) can oversubscribe a busy machine
            extra = {} if threads == "default" else {"OMP_NUM_THREADS": threads}
            local = timed([*base, "--out", str(work / f"local-{threads}")], {**env, **extra})
            print(f"local predict, torch threads {threads}: {n} images, wall {local:.1f} s, {n / local:.2f} images/s")
        for k, v in LOCAL_RAY_ENV.items():
            os.environ.setdefault(k, v)
        cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": args.cpus, "include_dashboard": False, "object_store_memory": 256 * 1024 ** 2})
        try:
            for actors in args.actors:
                out = work / f"ray{actors}"
                wall = timed([*base, "--out", str(out), "--ray", cluster.address, "--actors", str(actors),
                              "--batch-size", str(args.batch_size)], env)
                written, busiest, seen = busiest_actor_seconds(out / "predictions.csv")
                print(f"ray predict, {actors} actor(s) ({seen} did work): {written} images, wall {wall:.1f} s, "
                      f"{written / wall:.2f} images/s end to end; predict {written / busiest:.2f} images/s "
                      f"(busiest actor {busiest:.1f} s)")
        finally:
            ray.shutdown()
            cluster.shutdown()


if __name__ == "__main__":
    main()
