"""`python -m jobs export`: a registered A2U net to ONNX / TorchScript with dynamic batch, height and width; the files
are reloaded here independently (onnxruntime on CPU, torch.jit.load) and compared with the original PyTorch net."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from mlflow.tracking import MlflowClient

from jobs.cli import main
from jobs.export import export_model
from model.cpu_inference import cpu_inference

pytestmark = pytest.mark.slow  # the ONNX export of the full net: ~2.5 min on 2 busy cores (errors: test_export_errors.py)

SHAPES = [(2, 4, 64, 64), (1, 4, 96, 128), (3, 4, 48, 80)]


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
        with torch.no_grad(), cpu_inference("reference"):  # the eager net as trained
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
        with torch.no_grad(), cpu_inference("reference"):
            want = registered["net"](x)
        with torch.no_grad(), torch.jit.optimized_execution(False):
            got = module(x)
        assert got.shape == want.shape
        assert (got - want).abs().max().item() <= 1e-4, tuple(x.shape)
    assert "export/a2u.pt" in _logged(MlflowClient(registered["uri"]), registered["run_id"])
