"""`python -m jobs export` refuses bad model URIs, formats and outputs with clear errors, before any export runs
(fast: the registered model is only loaded, never exported)."""
from __future__ import annotations

from pathlib import Path

import pytest

from jobs.cli import main
from jobs.errors import JobError
from jobs.export import export_model


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
