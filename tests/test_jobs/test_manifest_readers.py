"""One manifest reader: a manifest of an unknown format version is refused by every consumer's entry point (data_prep
verify/stats/resume, the train and eval loaders, `jobs train` and `jobs evaluate`) with the same message, naming
the file."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import pipeline
from data_prep.cli import main as data_prep_main
from formats.manifest import FORMAT_VERSION, ManifestError, read_manifest
from jobs.cli import main as jobs_main
from jobs.errors import JobError
from jobs.evaluate import open_dataset
from jobs.trainer import check_dataset
from tests.test_jobs.conftest import DEMO_CONFIG, TINY


@pytest.fixture()
def future_dataset(synthetic_dataset: Path, tmp_path: Path) -> tuple[Path, str]:
    """A copy of the synthetic set whose manifest says format 99; and the message every reader must give."""
    ds = Path(shutil.copytree(synthetic_dataset, tmp_path / "ds"))
    doc = json.loads((ds / "manifest.json").read_text())
    doc["format"] = 99
    (ds / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(ManifestError) as info:
        read_manifest(ds)
    message = str(info.value)
    assert str(ds / "manifest.json") in message and "99" in message and str(FORMAT_VERSION) in message
    return ds, message


def test_loaders_refuse(future_dataset: tuple[Path, str]) -> None:
    ds, message = future_dataset
    for build in (lambda: pipeline.build_train_loader(ds, 2, 32), lambda: pipeline.build_eval_loader(ds)):
        with pytest.raises(pipeline.DatasetError) as info:
            build()
        assert message in str(info.value)


def test_data_prep_refuses(future_dataset: tuple[Path, str], capsys: pytest.CaptureFixture) -> None:
    ds, message = future_dataset
    assert data_prep_main(["verify", str(ds)]) == 1
    assert message in capsys.readouterr().out
    assert data_prep_main(["stats", str(ds)]) == 2
    assert message in capsys.readouterr().err
    # resuming into the directory reads its manifest too
    assert data_prep_main(["synthetic", "--out", str(ds), "--count", "12", "--size", "320", "--workers", "1"]) == 2
    assert message in capsys.readouterr().err


def test_jobs_refuse(future_dataset: tuple[Path, str], capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    ds, message = future_dataset
    for check in (lambda: check_dataset(str(ds)), lambda: open_dataset(str(ds))):
        with pytest.raises(JobError) as info:
            check()
        assert message in str(info.value)
    rc = jobs_main(["train", "--config", DEMO_CONFIG, *TINY, f"data.dataset_dir={ds}",
                    f"tracking.tracking_uri=sqlite:///{tmp_path / 'm.db'}", f"run.storage_path={tmp_path / 'ray'}"])
    assert rc == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "ray").exists()   # refused before anything started


def test_older_manifest_without_encoding_is_png(synthetic_dataset: Path, tmp_path: Path) -> None:
    ds = Path(shutil.copytree(synthetic_dataset, tmp_path / "ds"))
    doc = json.loads((ds / "manifest.json").read_text())
    doc.pop("encoding", None)
    (ds / "manifest.json").write_text(json.dumps(doc))
    assert read_manifest(ds).encoding == "png"
    check_dataset(str(ds))
    batch = next(iter(pipeline.build_train_loader(ds, 2, 32, num_threads=1)))
    assert batch["image"].shape == (2, 3, 32, 32)
