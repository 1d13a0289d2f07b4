"""`demo` (what `make demo` runs): synthetic shards -> 2-worker CPU training on local Ray -> evaluation on the
synthetic test shards (with `--set-alias champion`) and on the real photographs of datasets/real-dev, each beside its
trimap-only floor -> predict in a fresh process from the registry -> where to look.

The exit code is 0 when every stage ran and the model learned (jobs/verdict.py: loss falling, better than the
trimap-only floor, judged with margins wider than the spread between CPUs); a failed stage raises JobError."""
from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from jobs.errors import JobError
from jobs.ray_env import REPO_ROOT

log = logging.getLogger(__name__)

DEMO_CONFIG = REPO_ROOT / "jobs" / "configs" / "demo_cpu.yaml"
REAL_DEV = REPO_ROOT / "datasets" / "real-dev"  # evaluation only: never trained on
# training foregrounds, long side (twice the crop: the net pools globally), seed; 50 held-out test foregrounds (x 2
# backgrounds) keep the evaluation short
SYNTHETIC = {"count": 400, "size": 192, "seed": 0, "test_count": 50}
PREDICT_IMAGES = 3


def _banner(text: str) -> None:
    print(f"\n=== {text} ===", flush=True)


def _run(cmd: list[str], env: dict[str, str] | None = None) -> None:
    print("$ " + " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env)
    if proc.returncode != 0:
        raise JobError(f"demo step failed (exit {proc.returncode}): {' '.join(cmd)}")


def extract_test_inputs(data: Path, out: Path, count: int) -> tuple[Path, Path]:
    """Copy `count` composites and trimaps out of the first test shard as PNG files (predict's input format)."""
    images, trimaps = out / "images", out / "trimaps"
    images.mkdir(parents=True, exist_ok=True)
    trimaps.mkdir(parents=True, exist_ok=True)
    shard = sorted(data.glob("test-*.tar"))
    if not shard:
        raise JobError(f"{data} has no test-*.tar shard")
    keys: list[str] = []
    with tarfile.open(shard[0]) as tar:
        for member in tar.getmembers():
            key, _, ext = member.name.partition(".")
            if ext not in ("image.png", "trimap.png"):
                continue
            if key not in keys:
                if len(keys) == count:
                    continue
                keys.append(key)
            target = (images if ext == "image.png" else trimaps) / f"{key}.png"
            target.write_bytes(tar.extractfile(member).read())  # type: ignore[union-attr]
    return images, trimaps


def logged_losses(tracking_uri: str, run_id: str) -> list[float]:
    """train/loss as logged to MLflow, in step order (what the verdict reads the loss trend from)."""
    from mlflow.tracking import MlflowClient

    history = MlflowClient(tracking_uri).get_metric_history(run_id, "train/loss")
    return [m.value for m in sorted(history, key=lambda m: m.step)]


def run_demo(workdir: str = "runs/demo", fresh: bool = False) -> int:
    from jobs import ray_env
    from jobs.config import load_config
    from jobs.evaluate import run_evaluate, trimap_only_score
    from jobs.tracking import resolve_tracking_uri
    from jobs.trainer import run_training
    from jobs.verdict import judge

    t0 = time.time()
    timings: dict[str, float] = {}
    work = Path(workdir).expanduser().resolve()
    if fresh and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    data = work / "data"
    # the embedded default store every command uses (runs/mlflow.db), so the pull commands printed below just work
    user_uri = os.environ.get("MLFLOW_TRACKING_URI")
    tracking_uri = resolve_tracking_uri()
    os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    ray_env.set_local_defaults()

    _banner(f"1/4 synthetic shards -> {data}")
    t = time.time()
    _run([sys.executable, "-m", "data_prep", "synthetic", "--out", str(data), "--count", str(SYNTHETIC["count"]),
          "--size", str(SYNTHETIC["size"]), "--seed", str(SYNTHETIC["seed"]), "--test-count",
          str(SYNTHETIC["test_count"]), "--overwrite"])  # the demo's own folder: an older demo's data is replaced
    timings["data_prep"] = time.time() - t

    _banner("2/4 train jobs/configs/demo_cpu.yaml on local Ray, 2 workers (progress below every few steps)")
    t = time.time()
    cfg = load_config(DEMO_CONFIG, [f"data.dataset_dir={data}", f"run.storage_path={work / 'ray'}",
                                    f"run.name=demo-{time.strftime('%Y%m%d-%H%M%S')}"])
    trained = run_training(cfg)
    timings["train"] = time.time() - t
    if not trained.model_version:
        raise JobError("the demo run registered no model")
    model_uri = f"models:/{cfg.tracking.registered_model_name}/{trained.model_version}"

    _banner(f"3/4 evaluate {model_uri} on the synthetic test shards (--set-alias champion) and on {REAL_DEV}")
    t = time.time()
    ev = run_evaluate(model_uri, str(data), str(work / "eval"), set_alias="champion")
    floor = trimap_only_score(str(data))
    real = run_evaluate(model_uri, str(REAL_DEV), str(work / "eval-real-dev"))
    real_floor = trimap_only_score(str(REAL_DEV))
    timings["evaluate"] = time.time() - t

    _banner("4/4 predict with models:/a2u-matting@champion in a fresh process")
    t = time.time()
    images, trimaps = extract_test_inputs(data, work / "inputs", PREDICT_IMAGES)
    champion = f"models:/{cfg.tracking.registered_model_name}@champion"
    _run([sys.executable, "-m", "jobs", "predict", "--model", champion, "--image", str(images),
          "--trimap", str(trimaps), "--out", str(work / "predictions"), "--overwrite"], env={**os.environ})
    timings["predict"] = time.time() - t
    timings["total"] = time.time() - t0

    losses = logged_losses(tracking_uri, trained.mlflow_run_id)
    verdict = judge(losses, ev["means"]["SAD"], floor["SAD"], real["means"]["SAD"], real_floor["SAD"])
    summary = {"model": model_uri, "alias": ev["alias"], "test_means": ev["means"], "trimap_only_means": floor,
               "real_dev_means": real["means"], "real_dev_trimap_only_means": real_floor,
               "train_images_per_second": trained.images_per_second, "train_steps": trained.step,
               "timings_s": {k: round(v, 1) for k, v in timings.items()}, "learned": verdict.ok,
               "verdict": list(verdict.lines), "tracking_uri": tracking_uri, "mlflow_run_id": trained.mlflow_run_id}
    (work / "demo_summary.json").write_text(json.dumps(summary, indent=1))
    _banner("done")
    print("official metrics, means (SAD, Grad, Conn / 1000); trimap-only = 0.5 in the unknown region")
    print("| set | model SAD | trimap-only SAD | ratio | model MSE | model Grad | model Conn |")
    print("|---|---|---|---|---|---|---|")
    for name, m, f in (("synthetic test", ev["means"], floor), ("real-dev (16 real photos)", real["means"], real_floor)):
        print(f"| {name} | {m['SAD']:.3f} | {f['SAD']:.3f} | {m['SAD'] / f['SAD']:.0%} | {m['MSE']:.4f} | "
              f"{m['Grad']:.3f} | {m['Conn']:.3f} |")
    print("verdict: " + ("learned" if verdict.ok else "DID NOT LEARN"))
    for line in verdict.lines:
        print("  " + line)
    print(f"{ev['alias']}; training {trained.step} steps, median {trained.images_per_second or 0:.2f} images/s")
    print("timings: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
    if tracking_uri.startswith("sqlite:///"):
        print(f"MLflow UI:    .venv/bin/mlflow ui --backend-store-uri {tracking_uri} --host 127.0.0.1 --port 5000")
    uri_flag = f" --tracking-uri {tracking_uri}" if user_uri else ""  # else the default store, found from here
    print(f"pull it:      .venv/bin/python -m jobs predict{uri_flag} --model {champion} --image PHOTO.png "
          "--trimap TRIMAP.png --out MATTE.png")
    print(f"              .venv/bin/python -m jobs evaluate{uri_flag} --model {champion} --data datasets/real-dev")
    print(f"predictions:  {work / 'predictions'}  (inputs in {work / 'inputs'})")
    print(f"per-image:    {ev['csv']}, {real['csv']}")
    print(f"checkpoints:  {trained.run_dir}")
    print(f"summary:      {work / 'demo_summary.json'}")
    return 0 if verdict.ok else 1
