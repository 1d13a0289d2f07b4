"""A real `mlflow server` on 127.0.0.1: training logs to it over HTTP, evaluation sets @champion, and `predict` in a
fresh process pulls models:/a2u-matting@champion with nothing but the tracking URI."""
from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from jobs.cli import main
from tests.test_jobs.conftest import DEMO_CONFIG, REPO_ROOT, TINY, child_env

pytestmark = pytest.mark.slow


def _first_test_sample(dataset: Path, out: Path) -> tuple[Path, Path]:
    with tarfile.open(sorted(dataset.glob("test-*.tar"))[0]) as tar:
        members = {m.name: m for m in tar.getmembers()}
        key = sorted(members)[0].split(".")[0]
        for ext in ("image.png", "trimap.png"):
            (out / ext).write_bytes(tar.extractfile(members[f"{key}.{ext}"]).read())  # type: ignore[union-attr]
    return out / "image.png", out / "trimap.png"


def test_train_register_alias_predict_over_http(mlflow_server: str, synthetic_dataset: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    rc = main(["train", "--config", DEMO_CONFIG, *TINY, f"data.dataset_dir={synthetic_dataset}",
               f"run.storage_path={tmp_path / 'ray'}", "run.name=http", "val.enabled=false"])
    assert rc == 0, capsys.readouterr().err
    client = MlflowClient(mlflow_server, mlflow_server)
    [run] = client.search_runs([client.get_experiment_by_name("a2u-demo").experiment_id])
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "train/loss")) == [1, 2, 3]
    assert run.data.params["data.crop_size"] == "64"
    [version] = client.search_model_versions("name='a2u-matting'")
    assert version.run_id == run.info.run_id

    # the same finished run invoked again: resumes at its end and registers nothing new
    rc = main(["train", "--config", DEMO_CONFIG, *TINY, f"data.dataset_dir={synthetic_dataset}",
               f"run.storage_path={tmp_path / 'ray'}", "run.name=http", "val.enabled=false"])
    assert rc == 0 and "version 1" in capsys.readouterr().out
    assert [v.version for v in client.search_model_versions("name='a2u-matting'")] == ["1"]

    rc = main(["evaluate", "--model", "models:/a2u-matting/1", "--data", str(synthetic_dataset),
               "--out", str(tmp_path / "eval"), "--set-alias", "champion"])
    out = capsys.readouterr().out
    assert rc == 0 and "champion -> version 1" in out
    assert (tmp_path / "eval" / "per_image.csv").read_text().startswith("key,SAD,MSE,Grad,Conn")

    image, trimap = _first_test_sample(synthetic_dataset, tmp_path)
    result = tmp_path / "alpha.png"
    proc = subprocess.run([sys.executable, "-m", "jobs", "predict", "--model", "models:/a2u-matting@champion",
                           "--image", str(image), "--trimap", str(trimap), "--out", str(result), "--device", "cpu"],
                          cwd=tmp_path, env=child_env(MLFLOW_TRACKING_URI=mlflow_server, PYTHONPATH=str(REPO_ROOT)),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    alpha = np.asarray(Image.open(result))
    tri = np.asarray(Image.open(trimap))
    assert alpha.shape == tri.shape and alpha.dtype == np.uint8
    assert (alpha[tri == 0] == 0).all() and (alpha[tri == 255] == 255).all()
