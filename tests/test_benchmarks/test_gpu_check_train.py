"""benchmarks/gpu_check_train.py's flow on the CPU (small sizes): the same stages the GPU machine runs, so a broken
stage shows here before a GPU run spends its minutes on it."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_cpu_run_of_the_training_check_passes_every_stage(tmp_path):
    proc = subprocess.run([sys.executable, "benchmarks/gpu_check_train.py", "--device", "cpu", "--out",
                           str(tmp_path / "out"), "--work", str(tmp_path / "work")], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    record = json.loads((tmp_path / "out" / "train_check.json").read_text())
    stages = record["stages"]
    assert list(stages) == ["data_prep", "train_with_failure", "resume", "evaluate", "predict", "predict_ray"]
    assert all(s["status"] == "passed" for s in stages.values())
    assert stages["train_with_failure"]["failure_injected_and_recovered"] is True
    assert stages["resume"]["step"] > stages["train_with_failure"]["step"] and stages["resume"]["same_mlflow_run"]
    assert stages["predict"]["mattes"] == 16
    assert stages["predict_ray"]["written"] == 16
