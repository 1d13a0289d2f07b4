"""A real `ray start --head` on 127.0.0.1 and `python -m jobs submit --follow` against it: the job succeeds and its
model is registered."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.test_jobs.conftest import DEMO_CONFIG, REPO_ROOT, TINY, child_env

pytestmark = pytest.mark.slow


def test_submit_to_ray_head(ray_head: dict, synthetic_dataset: Path, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = subprocess.run(
        [sys.executable, "-m", "jobs", "submit", "--config", DEMO_CONFIG, "--address", ray_head["dashboard"],
         "--follow", *TINY, f"data.dataset_dir={synthetic_dataset}", f"run.storage_path={tmp_path / 'ray'}",
         "run.name=submitted", "val.enabled=false", "scaling.num_workers=1", "tracking.serialization_format=pickle"],
        cwd=REPO_ROOT, env=child_env(MLFLOW_TRACKING_URI=uri), capture_output=True, text=True, timeout=480)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "submitted job raysubmit_" in proc.stdout and "SUCCEEDED" in proc.stdout
    [version] = MlflowClient(uri, uri).search_model_versions("name='a2u-matting'")
    assert version.status == "READY"
    assert (tmp_path / "ray" / "submitted").is_dir()
    # with that head running on this machine and no RAY_ADDRESS, the embedded default starts a cluster of its own
    # (a bare ray.init() would attach to the head and refuse the local num_cpus)
    probe = ("import ray; from jobs import ray_env; started = ray_env.connect(num_cpus=1); "
             "print('GCS', ray.get_runtime_context().gcs_address, started); ray.shutdown()")
    env = child_env()
    env.pop("RAY_ADDRESS", None)
    local = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                           timeout=180)
    assert local.returncode == 0, local.stderr[-3000:]
    gcs = next(line.split()[1:] for line in local.stdout.splitlines() if line.startswith("GCS"))
    assert gcs[0] != ray_head["gcs"] and gcs[1] == "True"
