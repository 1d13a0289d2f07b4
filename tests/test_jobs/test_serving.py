"""`mlflow models serve -m models:/a2u-matting@champion --env-manager local`: a real scoring server on 127.0.0.1
answers an image+trimap tensor with the same alpha as pyfunc `predict` and the PyTorch net, and refuses bad input."""
from __future__ import annotations

import subprocess
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pytest
import requests
import torch
from mlflow.tracking import MlflowClient

from jobs.tracking import ensure_experiment, log_and_register_model
from model.net import A2UMatting
from tests.test_jobs.conftest import VENV_BIN, child_env, free_port, stop_process_group, wait_http

pytestmark = pytest.mark.slow


def test_serve_registered_champion(tmp_path: Path, monkeypatch) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    torch.manual_seed(1)
    net = A2UMatting()
    with torch.no_grad():
        net.train()(torch.randn(2, 4, 32, 32))
    net.eval()
    client = MlflowClient(uri, uri)
    run_id = client.create_run(ensure_experiment(uri, "serving-test")).info.run_id
    info = log_and_register_model(net, uri, run_id, "a2u-matting", serialization_format="pickle")  # jobs path, training default
    client.set_registered_model_alias("a2u-matting", "champion", info["version"])

    port = free_port()
    log = tmp_path / "serve.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            [str(VENV_BIN / "mlflow"), "models", "serve", "-m", "models:/a2u-matting@champion", "--env-manager",
             "local", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            stdout=fh, stderr=subprocess.STDOUT, env=child_env(MLFLOW_TRACKING_URI=uri), cwd=tmp_path,
            start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/ping", proc, 180, log)
        # a batch of 2 image+trimap tensors, N×4×H×W float32 (ImageNet-normalised RGB, trimap/255)
        x = torch.randn(2, 4, 32, 48, generator=torch.Generator().manual_seed(3))
        x[:, 3] = torch.tensor([0.0, 128 / 255, 1.0])[torch.randint(0, 3, (2, 32, 48))]
        resp = requests.post(f"{base}/invocations", json={"inputs": x.numpy().tolist()}, timeout=120)
        assert resp.status_code == 200, resp.text[:2000]
        served = np.asarray(resp.json()["predictions"], dtype=np.float32)
        assert served.shape == (2, 1, 32, 48)

        with torch.no_grad():
            want = net(x).numpy()
        assert np.abs(served - want).max() <= 1e-4
        pyfunc = mlflow.pyfunc.load_model("models:/a2u-matting@champion")
        assert np.abs(served - pyfunc.predict(x.numpy())).max() <= 1e-5

        bad = requests.post(f"{base}/invocations", json={"inputs": x[:, :3].numpy().tolist()}, timeout=60)
        assert bad.status_code == 400 and "shape" in bad.text.lower(), bad.text[:500]
    finally:
        stop_process_group(proc)
    assert proc.poll() is not None
    assert "fast CPU path" in log.read_text()  # the served model says which inference path it took
