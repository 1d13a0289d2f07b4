"""The training half of the GPU check: a user's path end to end on the card, with the real Ray, MLflow and DALI.

Synthetic shards -> `jobs train` with `jobs/configs/gpu_smoke.yaml` on the embedded local Ray (one GPU worker, bf16,
channels_last, fused Adam and kernels, the DALI GPU loader; one worker, so no DDP, NCCL or SyncBatchNorm, which
`gpu_check.py`'s `ddp` step covers at world size 1 only) with a worker killed mid-run (Ray restarts
it and it resumes from the last checkpoint onto the GPU) -> the same run name again with one more epoch (a resume
from the stored run) -> `jobs evaluate --device cuda` on datasets/real-dev -> `jobs predict --device cuda` in a fresh
process -> the same with `--ray` (Ray Data actors, a GPU each). Each stage is checked (exit status, steps reached, the failure really injected, the model registered,
scores finite) and timed; the first failure stops the run. Writes `train_check.json` (and prints it) into `--out`.

    bash benchmarks/gpu_check_train.sh                  # on the GPU machine (unpacks the dali and train wheels)
    .venv/bin/python benchmarks/gpu_check_train.py --device cpu --out /tmp/x   # the same flow, small, on a CPU
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

CONFIG = REPO_ROOT / "jobs" / "configs" / "gpu_smoke.yaml"
REAL_DEV = REPO_ROOT / "datasets" / "real-dev"
# per device: synthetic data (count, long side), config overrides, the step at which the worker is killed
SIZES: dict[str, dict[str, Any]] = {
    "cuda": {"data": (48, 640), "overrides": [], "fail_at": 30},
    "cpu": {"data": (12, 128), "fail_at": 4,
            "overrides": ["scaling.use_gpu=false", "scaling.cpus_per_worker=1", "data.crop_size=64",
                          "data.batch_size=2", "data.iterations_per_epoch=6", "checkpoint.every_n_steps=3",
                          "model.sync_batchnorm=false", "model.options.aspp_dilations=[1,2,3]", "val.max_samples=2"]},
}


def run_stage(record: dict[str, Any], name: str, fn: Callable[[], dict[str, Any]]) -> bool:
    """Run one stage, store its result (or error) and seconds under `name`; True when it passed."""
    t0 = time.time()
    try:
        result = fn()
        ok = bool(result.pop("ok", True))
    except Exception as exc:  # noqa: BLE001 - every failure is reported, then the run stops
        result, ok = {"error": f"{type(exc).__name__}: {exc}"[:2000]}, False
    result.update(seconds=round(time.time() - t0, 1), status="passed" if ok else "failed")
    record["stages"][name] = result
    print(f"{name}: {result['status']} ({result['seconds']} s) {json.dumps(result, default=str)[:600]}", flush=True)
    return ok


def _subprocess(cmd: list[str], timeout: float) -> dict[str, Any]:
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)
    tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
    return {"ok": proc.returncode == 0, "exit_code": proc.returncode, "command": " ".join(cmd), "tail": tail}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=sorted(SIZES), default="cuda")
    parser.add_argument("--out", default=os.environ.get("OUT") or "gpu_check_out")
    parser.add_argument("--work", default="/tmp/a2u-gpu-train", help="data, Ray storage, MLflow store (replaced)")
    args = parser.parse_args(argv)
    import shutil

    out, work = Path(args.out), Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'mlflow.db'}"
    size = SIZES[args.device]
    record: dict[str, Any] = {"device": args.device, "config": str(CONFIG.relative_to(REPO_ROOT)), "stages": {}}
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            record["stages"]["env"] = {"status": "skipped: no CUDA device"}
            print(json.dumps(record))
            (out / "train_check.json").write_text(json.dumps(record, indent=1))
            return 0
        record["gpu"] = torch.cuda.get_device_name(0)
    data, name = work / "data", "gpu-check"
    base = [f"data.dataset_dir={data}", f"run.storage_path={work / 'ray'}", f"run.name={name}", *size["overrides"]]
    state: dict[str, Any] = {}

    def prepare() -> dict[str, Any]:
        count, side = size["data"]
        return _subprocess([sys.executable, "-m", "data_prep", "synthetic", "--out", str(data), "--count", str(count),
                            "--size", str(side), "--seed", "0"], 600)

    def train() -> dict[str, Any]:
        from jobs.config import load_config
        from jobs.trainer import run_training

        cfg = load_config(CONFIG, [*base, f"debug.fail_at_step={size['fail_at']}", "debug.fail_rank=0"])
        done = run_training(cfg)
        state.update(outcome=done, cfg=cfg)
        expected = cfg.optim.epochs * cfg.data.iterations_per_epoch
        injected = (Path(done.run_dir) / f"injected_failure_step{size['fail_at']}").exists()
        return {"ok": done.step == expected and injected and bool(done.model_version), "step": done.step,
                "expected_step": expected, "failure_injected_and_recovered": injected,
                "model_version": done.model_version, "images_per_second": done.images_per_second,
                "train_seconds": round(done.seconds, 1)}

    def resume() -> dict[str, Any]:
        from jobs.config import load_config
        from jobs.trainer import run_training

        first = state["outcome"]
        cfg = load_config(CONFIG, [*base, f"optim.epochs={state['cfg'].optim.epochs + 1}"])
        done = run_training(cfg)
        state["outcome"] = done
        expected = cfg.optim.epochs * cfg.data.iterations_per_epoch
        return {"ok": done.step == expected and done.mlflow_run_id == first.mlflow_run_id and bool(done.model_version),
                "step": done.step, "expected_step": expected, "same_mlflow_run": done.mlflow_run_id == first.mlflow_run_id,
                "model_version": done.model_version, "images_per_second": done.images_per_second}

    def evaluate() -> dict[str, Any]:
        from jobs.evaluate import run_evaluate

        done = state["outcome"]
        model = f"models:/{state['cfg'].tracking.registered_model_name}/{done.model_version}"
        state["model"] = model
        ev = run_evaluate(model, str(REAL_DEV), str(work / "eval"), device=args.device)
        means = ev["means"]
        return {"ok": not ev["failed"] and all(math.isfinite(v) for v in means.values()), "model": model,
                "real_dev_means": means, "failed": ev["failed"]}

    def predict_command(out_dir: Path, *extra: str) -> list[str]:
        return [sys.executable, "-m", "jobs", "predict", "--model", state["model"], "--image", str(REAL_DEV / "merged"),
                "--trimap", str(REAL_DEV / "trimaps"), "--out", str(out_dir), "--device", args.device, *extra]

    def predict() -> dict[str, Any]:
        result = _subprocess(predict_command(work / "predictions"), 600)
        written = sorted((work / "predictions").glob("*.png"))
        result.update(ok=result["ok"] and len(written) == len(list((REAL_DEV / "merged").glob("*.png"))),
                      mattes=len(written))
        return result

    def predict_ray() -> dict[str, Any]:
        import csv

        out_dir = work / "predictions-ray"
        result = _subprocess(predict_command(out_dir, "--ray"), 600)
        table = out_dir / "predictions.csv"
        statuses = [row["status"] for row in csv.DictReader(table.open())] if table.is_file() else []
        result.update(ok=result["ok"] and len(statuses) == 16 and set(statuses) == {"written"},
                      written=statuses.count("written"), rows=len(statuses))
        return result

    for stage, fn in (("data_prep", prepare), ("train_with_failure", train), ("resume", resume),
                      ("evaluate", evaluate), ("predict", predict), ("predict_ray", predict_ray)):
        if not run_stage(record, stage, fn):
            break
    (out / "train_check.json").write_text(json.dumps(record, indent=1, default=str))
    failed = [k for k, v in record["stages"].items() if v.get("status") == "failed"]
    print(f"gpu_check_train: {len(record['stages']) - len(failed)} of 6 stages passed; failed: {failed}")
    return 1 if failed or len(record["stages"]) < 6 else 0


if __name__ == "__main__":
    sys.exit(main())
