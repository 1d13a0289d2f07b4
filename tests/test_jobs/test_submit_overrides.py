"""What `jobs submit` pins before shipping the repository: paths and the tracking store as the workers must see them."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest

from jobs.submit import _job_overrides

CONFIG = "jobs/configs/demo_cpu.yaml"


def test_relative_paths_become_absolute_without_following_symlinks(tmp_path: Path, monkeypatch) -> None:
    # /shared may be a symlink on the submitting machine and a plain mount on the GPU nodes
    (tmp_path / "mnt").mkdir()
    (tmp_path / "shared").symlink_to(tmp_path / "mnt")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'm.db'}")
    overrides, _ = _job_overrides(str(Path(__file__).resolve().parents[2] / CONFIG),
                                  ["data.dataset_dir=shared/data", "run.storage_path=shared/ray"])
    assert f"data.dataset_dir={tmp_path / 'shared' / 'data'}" in overrides
    assert f"run.storage_path={tmp_path / 'shared' / 'ray'}" in overrides


def test_a_relative_sqlite_override_is_pinned(tmp_path: Path, monkeypatch) -> None:
    # left relative, the job would open it inside its temporary working_dir and lose the run with it
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    overrides, env = _job_overrides(str(Path(__file__).resolve().parents[2] / CONFIG),
                                    ["tracking.tracking_uri=sqlite:///runs/x.db"])
    assert overrides[-1] == f"tracking.tracking_uri=sqlite:///{tmp_path / 'runs' / 'x.db'}"
    assert "MLFLOW_TRACKING_URI" not in env


def test_a_loopback_tracking_server_is_named_as_one_node_only(tmp_path: Path, monkeypatch,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    import jobs.tracking

    server = "http://127.0.0.1:5999"
    monkeypatch.setattr(jobs.tracking, "check_tracking_reachable", lambda uri: None)  # no server needed for this
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    with caplog.at_level(logging.WARNING):
        _, env = _job_overrides(str(Path(__file__).resolve().parents[2] / CONFIG), [])
    assert env["MLFLOW_TRACKING_URI"] == server
    assert "workers on other nodes would lose their metrics" in caplog.text
