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
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'm.db'}")
    MlflowClient(f"sqlite:///{tmp_path / 'm.db'}").search_experiments()  # a store that exists, without the model
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


@pytest.mark.parametrize("layout", ["file", "folder"])
def test_predict_never_writes_over_its_inputs_or_existing_mattes(capsys: pytest.CaptureFixture, tmp_path: Path,
                                                                layout: str) -> None:
    from PIL import Image

    photos, trimaps = tmp_path / "photos", tmp_path / "trimaps"
    photos.mkdir()
    trimaps.mkdir()
    Image.new("RGB", (8, 8), (10, 20, 30)).save(photos / "cat.png")
    Image.new("L", (8, 8), 128).save(trimaps / "cat.png")
    before = (photos / "cat.png").read_bytes()
    image, trimap = (photos / "cat.png", trimaps / "cat.png") if layout == "file" else (photos, trimaps)
    for out in (image, trimap):  # the photo, the trimap (file), or their folders (folder)
        rc, err = _run(capsys, "predict", "--model", str(tmp_path / "ckpt"), "--image", str(image),
                       "--trimap", str(trimap), "--out", str(out))
        assert rc == 2 and "over the input file" in err, err
    assert (photos / "cat.png").read_bytes() == before
    out = tmp_path / "mattes"
    out.mkdir()
    (out / "cat.png").write_bytes(b"an earlier matte")
    rc, err = _run(capsys, "predict", "--model", str(tmp_path / "ckpt"), "--image", str(image),
                   "--trimap", str(trimap), "--out", str(out if layout == "folder" else out / "cat.png"))
    assert rc == 2 and "exists" in err and "--overwrite" in err
    assert (out / "cat.png").read_bytes() == b"an earlier matte"
    rc, err = _run(capsys, "predict", "--model", str(tmp_path / "ckpt"), "--image", str(image),
                   "--trimap", str(trimap), "--out", str(out), "--overwrite")
    assert rc == 2 and "neither an existing checkpoint path" in err  # past the output checks, at the model


def test_registry_commands_share_one_default_store_and_never_create_an_empty_one(
        capsys: pytest.CaptureFixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from jobs.tracking import DEFAULT_STORE

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.png").write_bytes(b"x")
    (tmp_path / "t.png").write_bytes(b"x")
    for argv in (["predict", "--image", "a.png", "--trimap", "t.png", "--out", "o.png"],
                 ["export", "--format", "onnx", "--out", "a.onnx"],
                 ["evaluate", "--data", str(tmp_path)]):
        rc, err = _run(capsys, argv[0], "--model", "models:/a2u-matting@champion", *argv[1:])
        assert rc == 2 and f"no MLflow store at {tmp_path / DEFAULT_STORE}" in err, (argv[0], err)
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / DEFAULT_STORE).exists()


def test_evaluation_refuses_a_damaged_test_shard(tmp_path: Path, synthetic_dataset: Path) -> None:
    import shutil

    from jobs.errors import JobError
    from jobs.evaluate import open_dataset

    data = tmp_path / "data"
    shutil.copytree(synthetic_dataset, data)
    shard = sorted(data.glob("test-*.tar"))[0]
    raw = bytearray(shard.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # one flipped byte inside a member
    shard.write_bytes(bytes(raw))
    with pytest.raises(JobError, match=rf"{shard.name}: sha256 does not match"):
        open_dataset(str(data))


def test_predict_gives_up_quickly_on_a_tracking_server_that_never_answers(capsys: pytest.CaptureFixture,
                                                                         tmp_path: Path) -> None:
    import socket

    with socket.socket() as silent:  # accepts connections (backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        uri = f"http://127.0.0.1:{silent.getsockname()[1]}"
        t0 = time.time()
        rc, err = _run(capsys, "predict", "--tracking-uri", uri, "--model", "models:/a2u-matting@champion",
                       "--image", str(tmp_path / "a.png"), "--trimap", str(tmp_path / "t.png"),
                       "--out", str(tmp_path / "o.png"))
    assert rc == 2 and "unreachable" in err and uri in err
    assert time.time() - t0 < 30
