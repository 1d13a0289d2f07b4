"""Ctrl-C (or `ray job stop`'s SIGTERM) during `python -m jobs train`: the command exits 130 with one line saying
how to resume, and the MLflow run is marked KILLED rather than left running."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.test_jobs.conftest import DEMO_CONFIG, REPO_ROOT, TINY, child_env, stop_process_group

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "ray-job-stop"])
def test_sigint_during_training_exits_130_with_the_resume_command(synthetic_dataset: Path, tmp_path: Path,
                                                                 sig: signal.Signals) -> None:
    # SIGTERM is what `ray job stop` sends to a submitted job (SIGKILL follows a few seconds later)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    log = tmp_path / "train.log"
    overrides = [*TINY, "data.iterations_per_epoch=400", f"data.dataset_dir={synthetic_dataset}",
                 f"run.storage_path={tmp_path / 'ray'}", "run.name=ctrl-c", f"tracking.tracking_uri={uri}",
                 "val.enabled=false", "tracking.log_model=false"]
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "jobs", "train", "--config", DEMO_CONFIG, *overrides],
                                cwd=REPO_ROOT, env=child_env(), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.time() + 240
        while "step 1/400" not in log.read_text() and time.time() < deadline and proc.poll() is None:
            time.sleep(1)
        assert "step 1/400" in log.read_text(), log.read_text()[-3000:]
        proc.send_signal(sig)
        rc = proc.wait(timeout=180)
    finally:
        stop_process_group(proc)
    text = log.read_text()
    assert rc == 130, text[-3000:]
    assert "interrupted: training run ctrl-c interrupted; rerun with run.name=ctrl-c" in text
    client = MlflowClient(uri)
    [run] = client.search_runs([client.get_experiment_by_name("a2u-demo").experiment_id])
    assert run.info.status == "KILLED"
