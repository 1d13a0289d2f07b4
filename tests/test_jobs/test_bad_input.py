"""Clear errors (exit 2, no traceback) for bad input: config keys, datasets, tracking URIs, model URIs, files."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from jobs.cli import main
from tests.test_jobs.conftest import DEMO_CONFIG, TINY, free_port


def _run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str]:
    rc = main(list(argv))
    return rc, capsys.readouterr().err


def test_unknown_config_key(capsys: pytest.CaptureFixture) -> None:
    rc, err = _run(capsys, "train", "--config", DEMO_CONFIG, "optim.learning_rate=0.1")
    assert rc == 2 and "unknown config key 'optim.learning_rate'" in err and "optim.lr" in err


def test_missing_dataset_fails_before_ray(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    t0 = time.time()
    rc, err = _run(capsys, "train", "--config", DEMO_CONFIG, *TINY, f"data.dataset_dir={tmp_path / 'nope'}",
                   f"tracking.tracking_uri=sqlite:///{tmp_path / 'm.db'}", f"run.storage_path={tmp_path / 'ray'}")
    assert rc == 2 and str(tmp_path / "nope") in err and "data_prep synthetic" in err
    assert time.time() - t0 < 60
    assert not (tmp_path / "ray").exists()  # nothing started


def test_unreachable_tracking_server_fails_at_start(capsys: pytest.CaptureFixture, tmp_path: Path,
                                                   synthetic_dataset: Path) -> None:
    uri = f"http://127.0.0.1:{free_port()}"
    t0 = time.time()
    rc, err = _run(capsys, "train", "--config", DEMO_CONFIG, *TINY, f"data.dataset_dir={synthetic_dataset}",
                   f"tracking.tracking_uri={uri}", f"run.storage_path={tmp_path / 'ray'}")
    assert rc == 2 and uri in err and "unreachable" in err
    assert time.time() - t0 < 30 and not (tmp_path / "ray").exists()


def test_file_store_uri_rejected(capsys: pytest.CaptureFixture, tmp_path: Path, synthetic_dataset: Path) -> None:
    rc, err = _run(capsys, "train", "--config", DEMO_CONFIG, f"data.dataset_dir={synthetic_dataset}",
                   f"tracking.tracking_uri=file://{tmp_path}/mlruns")
    assert rc == 2 and "sqlite" in err


@pytest.mark.parametrize("model", ["models:/no-such-model@champion", "models:/no-such-model/3"])
def test_unknown_registered_model(capsys: pytest.CaptureFixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  synthetic_dataset: Path, model: str) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'm.db'}")
    rc, err = _run(capsys, "evaluate", "--model", model, "--data", str(synthetic_dataset))
    assert rc == 2 and "no-such-model" in err and "not found" in err


def test_missing_checkpoint_path_and_inputs(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    rc, err = _run(capsys, "predict", "--model", str(tmp_path / "ckpt"), "--image", str(tmp_path / "a.png"),
                   "--trimap", str(tmp_path / "t.png"), "--out", str(tmp_path / "o.png"))
    assert rc == 2 and "a.png does not exist" in err
    (tmp_path / "a.png").write_bytes(b"not a png")
    (tmp_path / "t.png").write_bytes(b"not a png")
    rc, err = _run(capsys, "predict", "--model", str(tmp_path / "ckpt"), "--image", str(tmp_path / "a.png"),
                   "--trimap", str(tmp_path / "t.png"), "--out", str(tmp_path / "o.png"))
    assert rc == 2 and "ckpt" in err and "neither an existing checkpoint path nor an MLflow URI" in err


def test_evaluate_on_folder_without_test_data(capsys: pytest.CaptureFixture, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'm.db'}")
    (tmp_path / "empty").mkdir()
    rc, err = _run(capsys, "evaluate", "--model", str(tmp_path), "--data", str(tmp_path / "empty"))
    assert rc == 2 and "neither a shard directory" in err
