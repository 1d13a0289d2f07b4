"""`python -m jobs export`: a registered A2U net to ONNX / TorchScript with dynamic batch, height and width; the files
are reloaded here independently (onnxruntime on CPU, torch.jit.load) and compared with the original PyTorch net."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from mlflow.tracking import MlflowClient

from jobs.cli import main
from jobs.errors import JobError
from jobs.export import export_model
from jobs.tracking import ensure_experiment, log_and_register_model
from model.net import A2UMatting

pytestmark = pytest.mark.slow  # the ONNX export of the full net: ~2.5 min on 2 busy cores

SHAPES = [(2, 4, 64, 64), (1, 4, 96, 128), (3, 4, 48, 80)]


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A real A2U net (BN statistics moved off their defaults) registered as a2u-matting@champion in a sqlite store."""
    root = tmp_path_factory.mktemp("export_store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    old = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    torch.manual_seed(0)
    net = A2UMatting()
    with torch.no_grad():  # a few train-mode passes give non-trivial running statistics
        for _ in range(2):
            net.train()(torch.randn(2, 4, 32, 32))
    net.eval()
    client = MlflowClient(uri, uri)
    run_id = client.create_run(ensure_experiment(uri, "export-test")).info.run_id
    info = log_and_register_model(net, uri, run_id, "a2u-matting", serialization_format="pickle")
    client.set_registered_model_alias("a2u-matting", "champion", info["version"])
    try:
        yield {"net": net, "run_id": run_id, "uri": uri, "root": root}
    finally:
        if old is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = old


def _inputs() -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(7)
    return [torch.randn(*shape, generator=gen) for shape in SHAPES]


def _logged(client: MlflowClient, run_id: str) -> list[str]:
    return [a.path for a in client.list_artifacts(run_id, "export")]


def test_onnx_export_dynamic_and_matches_pytorch(registered: dict, tmp_path: Path, capsys) -> None:
    out = tmp_path / "a2u.onnx"
    rc = main(["export", "--model", "models:/a2u-matting@champion", "--format", "onnx", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    assert "logged to MLflow run" in capsys.readouterr().out

    graph = onnx.load(str(out)).graph
    dims = graph.input[0].type.tensor_type.shape.dim
    assert len(dims) == 4 and dims[1].dim_value == 4
    assert all(dims[i].dim_param and not dims[i].dim_value for i in (0, 2, 3))  # batch, H, W symbolic

    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    for x in _inputs():
        with torch.no_grad():
            want = registered["net"](x).numpy()
        got = session.run(None, {name: x.numpy()})[0]
        assert got.shape == (x.shape[0], 1, x.shape[2], x.shape[3])
        assert np.abs(got - want).max() <= 1e-4, tuple(x.shape)
    assert "export/a2u.onnx" in _logged(MlflowClient(registered["uri"]), registered["run_id"])


def test_torchscript_export_dynamic_and_matches_pytorch(registered: dict, tmp_path: Path) -> None:
    out = tmp_path / "a2u.pt"
    result = export_model(f"runs:/{registered['run_id']}/model", "torchscript", out)
    assert result.run_id == registered["run_id"] and set(result.max_abs_error) == {"2x4x64x64", "1x4x96x128"}
    module = torch.jit.load(str(out))
    for x in _inputs():
        with torch.no_grad(), torch.jit.optimized_execution(False):
            want = registered["net"](x)
            got = module(x)
        assert got.shape == want.shape
        assert (got - want).abs().max().item() <= 1e-4, tuple(x.shape)
    assert "export/a2u.pt" in _logged(MlflowClient(registered["uri"]), registered["run_id"])


def test_unknown_model_uris_fail_clearly(registered: dict, tmp_path: Path, capsys) -> None:
    out = tmp_path / "x.onnx"
    assert main(["export", "--model", "models:/a2u-matting@nobody", "--format", "onnx", "--out", str(out)]) == 2
    assert "models:/a2u-matting@nobody not found in the registry" in capsys.readouterr().err
    assert main(["export", "--model", "models:/no-such-model/1", "--format", "torchscript", "--out", str(out)]) == 2
    assert "models:/no-such-model/1 not found in the registry" in capsys.readouterr().err
    assert main(["export", "--model", "runs:/0123456789abcdef0123456789abcdef/model", "--format", "onnx",
                 "--out", str(out)]) == 2
    assert "cannot load model runs:/0123456789abcdef0123456789abcdef/model" in capsys.readouterr().err
    missing = tmp_path / "no_checkpoint_here"
    assert main(["export", "--model", str(missing), "--format", "onnx", "--out", str(out)]) == 2
    assert f"model '{missing}' is neither an existing checkpoint path nor an MLflow URI" in capsys.readouterr().err
    assert not out.exists()


def test_bad_format_and_out_are_refused(registered: dict, tmp_path: Path) -> None:
    with pytest.raises(JobError, match=r"export format must be one of \('onnx', 'torchscript'\), got 'tflite'"):
        export_model("models:/a2u-matting@champion", "tflite", tmp_path / "a.tflite")
    with pytest.raises(JobError, match=r"is a directory; give a file name"):
        export_model("models:/a2u-matting@champion", "onnx", tmp_path)
    with pytest.raises(SystemExit):
        main(["export", "--model", "models:/a2u-matting@champion", "--format", "tflite", "--out", "x"])
