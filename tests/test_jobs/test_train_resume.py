"""Fault tolerance on the embedded local Ray: a worker killed mid-run, a second invocation with the same name, and a
NaN loss (found at once, and found at a later host sync) — MLflow must hold every step exactly once, in the same run."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
from mlflow.tracking import MlflowClient

from jobs.config import load_config
from jobs.errors import NonFiniteLossError
from jobs.trainer import run_training
from tests.test_jobs.conftest import DEMO_CONFIG, TINY

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """One embedded local Ray for the three invocations (started and shut down here)."""
    import ray

    from jobs import ray_env

    started = ray_env.connect(num_cpus=2)
    yield
    if started:
        ray.shutdown()


def _steps(client: MlflowClient, run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def test_worker_crash_resume_and_nan(local_ray: None, synthetic_dataset: Path, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    base = [*TINY, f"data.dataset_dir={synthetic_dataset}", f"run.storage_path={tmp_path / 'ray'}", "run.name=ft",
            f"tracking.tracking_uri={uri}", "tracking.log_model=false", "checkpoint.every_n_steps=2"]
    client = MlflowClient(uri)

    # 1) 3 steps/epoch x 2 epochs, worker rank 1 dies at step 3; checkpoint at step 2 -> resume from there
    first = run_training(load_config(DEMO_CONFIG, [*base, "optim.epochs=2", "debug.fail_at_step=3",
                                                   "checkpoint.max_failures=1"]))
    assert (tmp_path / "ray" / "ft" / "injected_failure_step3").exists()  # the crash really happened
    assert first.step == 6
    assert _steps(client, first.mlflow_run_id, "train/loss") == [1, 2, 3, 4, 5, 6]  # no gaps, no duplicates
    assert _steps(client, first.mlflow_run_id, "val/SAD") == [3, 6]
    assert client.get_run(first.mlflow_run_id).info.status == "FINISHED"
    grids = [a.path for a in client.list_artifacts(first.mlflow_run_id, "val_grids")]
    assert grids == ["val_grids/epoch_001.png", "val_grids/epoch_002.png"]

    # 2) same name + storage path, one more epoch: resumes at step 6 in the same MLflow run
    second = run_training(load_config(DEMO_CONFIG, [*base, "optim.epochs=3"]))
    assert second.mlflow_run_id == first.mlflow_run_id and second.step == 9
    assert _steps(client, first.mlflow_run_id, "train/loss") == list(range(1, 10))
    assert "resume.changed.optim.epochs" in client.get_run(first.mlflow_run_id).data.tags

    # 3) a NaN loss at step 11 stops the run with a clear error; the step-10 checkpoint stays the latest
    with pytest.raises(NonFiniteLossError, match="step 11") as info:
        run_training(load_config(DEMO_CONFIG, [*base, "optim.epochs=4", "debug.nan_at_step=11"]))
    assert "checkpoint_step00000010" in str(info.value)
    assert _steps(client, first.mlflow_run_id, "train/loss") == list(range(1, 11))
    assert client.get_run(first.mlflow_run_id).info.status == "FAILED"

    # 4) host syncs only every 4 steps and at checkpoints (every 2) / epoch ends: step 11 is not synced (not logged),
    #    12 is (mean loss of 11-12); the NaN at step 13 is found at the step-14 sync, reported as step 13, and the
    #    step-14 checkpoint (whose weights saw the NaN update) is never written
    with pytest.raises(NonFiniteLossError, match="step 13") as info:
        run_training(load_config(DEMO_CONFIG, [*base, "optim.epochs=5", "debug.nan_at_step=13",
                                               "tracking.log_every_n_steps=4"]))
    assert "checkpoint_step00000012" in str(info.value)
    assert _steps(client, first.mlflow_run_id, "train/loss") == [*range(1, 11), 12]
