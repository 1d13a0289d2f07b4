"""`jobs.model_uri`: which code a loaded model runs, pt2 models on another device, device names checked up front."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from jobs.errors import JobError
from jobs.model_uri import load_net, pick_device

from .conftest import child_env

REPO = Path(__file__).resolve().parents[2]


class _PositionNet(torch.nn.Module):
    """A tiny stand-in with what pins an exported A2U graph to its export device: a tensor made in forward
    (`torch.arange(..., device=x.device)`, as the kernel generator does)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(4, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ramp = torch.arange(x.shape[-1], device=x.device, dtype=x.dtype) / x.shape[-1]
        return self.conv(x) + ramp


def test_a_pt2_model_moves_to_the_asked_device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # `meta` stands in for a GPU: MLflow's own loader refuses any device but the export's for pt2 models, and
    # moving the weights alone would leave the graph's arange on the CPU
    from jobs.tracking import ensure_experiment, log_and_register_model

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    client = MlflowClient(uri, uri)
    run_id = client.create_run(ensure_experiment(uri, "pt2-device")).info.run_id
    torch.manual_seed(0)
    net = _PositionNet().eval()
    info = log_and_register_model(net, uri, run_id, "pt2-net", serialization_format="pt2", example_size=16)
    assert info["serialization_format"] == "pt2"
    x = torch.randn(1, 4, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(load_net("models:/pt2-net/1", "cpu")(x), net(x))
    on_meta = load_net("models:/pt2-net/1", "meta")
    out = on_meta(x.to("meta"))
    assert out.device.type == "meta" and tuple(out.shape) == (1, 1, 16, 16)


def test_a_pickled_model_runs_this_checkouts_model_package(registered: dict) -> None:
    # MLflow puts the model's saved code/ first on sys.path; a fresh process (a Ray actor, a script) that loads the
    # model before importing `model` itself must still get this checkout's package, not the saved copy
    probe = ("from jobs.model_uri import load_net; load_net('models:/a2u-matting@champion'); "
             "import model, model.inference; print(model.__file__); print(model.inference.__file__)")
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env=child_env(MLFLOW_TRACKING_URI=registered["uri"]))
    assert done.returncode == 0, done.stderr[-2000:]
    paths = [Path(line) for line in done.stdout.split()]
    assert paths and all(p.is_relative_to(REPO / "model") for p in paths), paths


def test_device_names_are_checked_up_front(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(JobError, match="not a device"):
        pick_device("gpu0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(JobError, match="only 1 CUDA device"):
        pick_device("cuda:1")
    assert pick_device("cuda:0") == torch.device("cuda", 0)
    assert pick_device("cpu") == torch.device("cpu")
