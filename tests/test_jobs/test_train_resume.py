"""Fault tolerance on the embedded local Ray: a worker killed mid-run resumes to exactly the weights of an
uninterrupted run; a second invocation with the same name continues the same MLflow run; a NaN loss is found at once,
or at a later host sync; a time budget ends a run early and says so, and a rerun continues it — MLflow holds every
step exactly once, in the same run. Each scenario is its own test."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from jobs.checkpointing import read_checkpoint
from jobs.config import load_config
from jobs.errors import NonFiniteLossError
from jobs.train_loop import BUDGET_KEY
from jobs.trainer import TrainOutcome, run_training
from tests.test_jobs.conftest import DEMO_CONFIG, TINY

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("resume")
    return {"root": root, "uri": f"sqlite:///{root / 'mlflow.db'}"}


def _base(store: dict, dataset: Path, name: str) -> list[str]:
    return [*TINY, f"data.dataset_dir={dataset}", f"run.storage_path={store['root'] / 'ray'}", f"run.name={name}",
            f"tracking.tracking_uri={store['uri']}", "tracking.log_model=false", "checkpoint.every_n_steps=2"]


def _steps(client: MlflowClient, run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, key))


@pytest.fixture(scope="module")
def crashed(local_ray: None, store: dict, synthetic_dataset: Path) -> TrainOutcome:
    """3 steps/epoch x 2 epochs; worker rank 1 dies at step 3; the checkpoint at step 2 is where it resumes."""
    return run_training(load_config(DEMO_CONFIG, [*_base(store, synthetic_dataset, "ft"), "optim.epochs=2",
                                                  "debug.fail_at_step=3", "checkpoint.max_failures=1"]))


def test_worker_crash_resumes_with_every_step_logged_once(crashed: TrainOutcome, store: dict) -> None:
    client = MlflowClient(store["uri"])
    assert (store["root"] / "ray" / "ft" / "injected_failure_step3").exists()  # the crash really happened
    assert crashed.step == 6
    assert _steps(client, crashed.mlflow_run_id, "train/loss") == [1, 2, 3, 4, 5, 6]  # no gaps, no duplicates
    assert _steps(client, crashed.mlflow_run_id, "val/SAD") == [3, 6]
    assert client.get_run(crashed.mlflow_run_id).info.status == "FINISHED"
    grids = [a.path for a in client.list_artifacts(crashed.mlflow_run_id, "val_grids")]
    assert grids == ["val_grids/epoch_001.png", "val_grids/epoch_002.png"]


def test_resumed_weights_equal_an_uninterrupted_run(crashed: TrainOutcome, store: dict,
                                                    synthetic_dataset: Path) -> None:
    reference = run_training(load_config(DEMO_CONFIG, [*_base(store, synthetic_dataset, "ft-reference"),
                                                       "optim.epochs=2"]))
    assert reference.step == crashed.step == 6
    got = read_checkpoint(crashed.checkpoint_path)["model"]
    want = read_checkpoint(reference.checkpoint_path)["model"]
    assert got.keys() == want.keys()
    different = [k for k in want if not torch.equal(got[k], want[k])]
    assert not different, f"{len(different)} tensors differ after the resume, e.g. {different[:3]}"


def test_second_invocation_continues_the_same_mlflow_run(crashed: TrainOutcome, store: dict,
                                                         synthetic_dataset: Path) -> None:
    client = MlflowClient(store["uri"])
    second = run_training(load_config(DEMO_CONFIG, [*_base(store, synthetic_dataset, "ft"), "optim.epochs=3"]))
    assert second.mlflow_run_id == crashed.mlflow_run_id and second.step == 9
    assert _steps(client, crashed.mlflow_run_id, "train/loss") == list(range(1, 10))
    assert "resume.changed.optim.epochs" in client.get_run(crashed.mlflow_run_id).data.tags


def test_nan_found_at_once_and_at_a_later_host_sync(local_ray: None, store: dict, synthetic_dataset: Path) -> None:
    client = MlflowClient(store["uri"])
    base = _base(store, synthetic_dataset, "nan")
    # a NaN loss at step 5 stops the run with a clear error; the step-4 checkpoint stays the latest
    with pytest.raises(NonFiniteLossError, match="step 5") as info:
        run_training(load_config(DEMO_CONFIG, [*base, "optim.epochs=2", "debug.nan_at_step=5"]))
    assert "checkpoint_step00000004" in str(info.value)
    [run] = [r for r in client.search_runs([client.get_experiment_by_name("a2u-demo").experiment_id])
             if r.info.run_name == "nan"]
    assert _steps(client, run.info.run_id, "train/loss") == [1, 2, 3, 4]
    assert client.get_run(run.info.run_id).info.status == "FAILED"

    # host syncs only every 4 steps and at checkpoints (every 2) / epoch ends (steps 6, 9): resumed at step 4, step 5
    # is not synced (not logged), 6 is; the NaN at step 7 is found at the step-8 sync, reported as step 7, and the
    # step-8 checkpoint (whose weights saw the NaN update) is never written
    with pytest.raises(NonFiniteLossError, match="step 7") as info:
        run_training(load_config(DEMO_CONFIG, [*base, "optim.epochs=3", "debug.nan_at_step=7",
                                               "tracking.log_every_n_steps=4"]))
    assert "checkpoint_step00000006" in str(info.value)
    assert _steps(client, run.info.run_id, "train/loss") == [1, 2, 3, 4, 6]


def test_time_budget_ends_the_run_early_says_so_and_a_rerun_continues(local_ray: None, store: dict,
                                                                       synthetic_dataset: Path) -> None:
    client = MlflowClient(store["uri"])
    base = [*_base(store, synthetic_dataset, "budget"), "optim.epochs=2", "checkpoint.every_n_steps=0",
            "tracking.log_every_n_steps=2"]
    # a 6-ms budget is spent by the first host sync (step 2, mid-epoch): the run stops there with a checkpoint
    first = run_training(load_config(DEMO_CONFIG, [*base, "optim.max_train_minutes=0.0001"]))
    assert first.stopped_by_time_budget and first.step == 2
    assert read_checkpoint(first.checkpoint_path)["step"] == 2
    assert client.get_run(first.mlflow_run_id).data.tags[BUDGET_KEY] == "2"
    assert client.get_run(first.mlflow_run_id).info.status == "FINISHED"

    second = run_training(load_config(DEMO_CONFIG, base))  # no budget: on to the config's end
    assert second.mlflow_run_id == first.mlflow_run_id and second.step == 6 and not second.stopped_by_time_budget
    assert BUDGET_KEY not in client.get_run(second.mlflow_run_id).data.tags
    assert _steps(client, second.mlflow_run_id, "train/loss") == [2, 3, 4, 6]  # synced steps, each once


def test_a_budget_spent_only_at_the_last_step_does_not_mark_a_complete_run(local_ray: None, store: dict,
                                                                           synthetic_dataset: Path) -> None:
    # the only host sync is at the end of the only epoch: the budget is found spent there, with nothing left to do
    done = run_training(load_config(DEMO_CONFIG, [*_base(store, synthetic_dataset, "budget-end"),
                                                  "checkpoint.every_n_steps=0", "tracking.log_every_n_steps=3",
                                                  "optim.max_train_minutes=0.0001"]))
    assert done.step == 3 and not done.stopped_by_time_budget
    assert BUDGET_KEY not in MlflowClient(store["uri"]).get_run(done.mlflow_run_id).data.tags
