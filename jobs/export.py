"""`python -m jobs export`: a trained matting net as ONNX or TorchScript, for deployment outside this code base.

The model comes from any URI `jobs.model_uri.load_net` understands (registry, run, checkpoint). The exported file
takes N×4×H×W float32 (ImageNet-normalised RGB + trimap/255; H, W multiples of 16, at least 32) and returns the raw
N×1×H×W alpha (clip to [0, 1] yourself), with batch, height and width all dynamic. Every export is checked before it
is reported: the file is reloaded (onnxruntime on CPU, or `torch.jit.load`) and run on random inputs of two batch
sizes and two image sizes against the PyTorch net; a larger error than the tolerance is a failure, not a warning.
When the URI names an MLflow run (runs:/, models:/), the file is logged to that run under `export/`.
"""
from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from jobs.errors import JobError

log = logging.getLogger(__name__)
logging.getLogger("onnx_ir").setLevel(logging.WARNING)  # one INFO line per deduplicated initializer otherwise

FORMATS = ("onnx", "torchscript")
CHECK_SHAPES = ((2, 4, 64, 64), (1, 4, 96, 128))  # (N, C, H, W) of the verification inputs
TOLERANCE = 1e-4
ONNX_OPSET = 18
ARTIFACT_DIR = "export"


@dataclass
class ExportResult:
    """What `export_model` wrote and how well the export matches the PyTorch net."""
    path: Path
    format: str
    max_abs_error: dict[str, float] = field(default_factory=dict)  # "NxCxHxW" -> max |exported - torch|
    run_id: str | None = None
    artifact_uri: str | None = None
    seconds: float = 0.0


def export_model(model_uri: str, fmt: str, out: str | Path, log_to_run: bool = True,
                 tolerance: float = TOLERANCE) -> ExportResult:
    """Export the net behind `model_uri` to `out` in `fmt` ("onnx" | "torchscript"), verify it, log it to its run."""
    from jobs.model_uri import load_net

    if fmt not in FORMATS:
        raise JobError(f"export format must be one of {FORMATS}, got {fmt!r}")
    out = Path(out).expanduser()
    if out.is_dir():
        raise JobError(f"--out {out} is a directory; give a file name, e.g. {out / ('a2u.' + _suffix(fmt))}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise JobError(f"cannot create the folder for --out {out}: {exc}") from exc
    t0 = time.time()
    net = load_net(model_uri, "cpu").eval()
    log.info("exporting %s as %s to %s", model_uri, fmt, out)
    if fmt == "onnx":
        _export_onnx(net, out)
    else:
        _export_torchscript(net, out)
    try:
        errors = verify_export(net, out, fmt, tolerance)
    except JobError as exc:
        if fmt == "torchscript" and type(net).__name__ == "ExportedNet":
            raise JobError(f"{exc}. {model_uri} was logged with serialization_format=pt2 (a torch.export graph); "
                           "tracing it to TorchScript freezes its shapes: export it to ONNX, or export a model "
                           "logged with serialization_format=pickle (the training default) or a checkpoint") from exc
        raise
    result = ExportResult(path=out, format=fmt, max_abs_error=errors)
    if log_to_run:
        result.run_id = run_of(model_uri)
        if result.run_id is not None:
            result.artifact_uri = _log_artifact(result.run_id, out)
        else:
            log.info("%s names no MLflow run; the export is not logged as an artifact", model_uri)
    result.seconds = time.time() - t0
    return result


def _suffix(fmt: str) -> str:
    return "onnx" if fmt == "onnx" else "pt"


def _example(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _export_onnx(net: torch.nn.Module, out: Path) -> None:
    """torch.export-based ONNX exporter with symbolic batch, H = 16·h and W = 16·w.

    What is written is the net's inference form: BatchNorms folded into the convolutions (model/cpu_inference.py)
    and the phase-split reassembly (model/phase_ops.py), which onnxruntime runs 4× faster than the earlier
    row-vectorised graph (benchmarks/RESULTS.md, "inference on CPU"); `verify_export` checks it against the eager
    net as trained."""
    from model.cpu_inference import folded_copy
    from model.net import A2UMatting

    if isinstance(net, A2UMatting):
        net, folded = folded_copy(net)
        log.info("ONNX export of the inference form: %d BatchNorm layers folded, phase-split reassembly", folded)
    batch = torch.export.Dim("batch", min=1, max=1024)
    h16 = torch.export.Dim("h16", min=2, max=1024)
    w16 = torch.export.Dim("w16", min=2, max=1024)
    example = _example(CHECK_SHAPES[0], 0)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning)
            program = torch.onnx.export(net, (example,), dynamo=True, input_names=["input"], output_names=["alpha"],
                                        dynamic_shapes=({0: batch, 2: 16 * h16, 3: 16 * w16},),
                                        opset_version=ONNX_OPSET, verbose=False,
                                        optimize=False)  # onnxscript's rewriter: a third of the export time; ORT optimises at load
            program.save(str(out))
    except Exception as exc:  # noqa: BLE001 - exporter errors come in many types; the message is what matters
        raise JobError(f"ONNX export failed ({type(exc).__name__}): {_first_lines(exc)}") from exc


def _export_torchscript(net: torch.nn.Module, out: Path) -> None:
    """`torch.jit.trace` (the net is data-independent apart from input checks); sizes stay symbolic in the trace.
    Traced on the CPU, the file runs on the CPU only: `torch.arange(..., device=x.device)` and the like are traced
    as CPU constants."""
    example = _example(CHECK_SHAPES[0], 0)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)  # input checks become constants
            warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*torch.jit.trace")
            traced = torch.jit.trace(net, (example,), check_trace=False)
        traced.save(str(out))
    except Exception as exc:  # noqa: BLE001
        raise JobError(f"TorchScript export failed ({type(exc).__name__}): {_first_lines(exc)}") from exc


def _first_lines(exc: BaseException, n: int = 3) -> str:
    return " | ".join(str(exc).strip().splitlines()[:n])[:600] or type(exc).__name__


def verify_export(net: torch.nn.Module, path: Path, fmt: str, tolerance: float = TOLERANCE) -> dict[str, float]:
    """Run the exported file and the net on random inputs of `CHECK_SHAPES`; JobError if any max |diff| > tolerance."""
    from model.cpu_inference import cpu_inference

    run = _onnx_runner(path) if fmt == "onnx" else _torchscript_runner(path)
    errors: dict[str, float] = {}
    for i, shape in enumerate(CHECK_SHAPES):
        x = _example(shape, 100 + i)
        with torch.no_grad(), cpu_inference("reference"):  # the eager net as trained, not its fast CPU copy
            want = net(x).numpy()
        try:
            got = run(x.numpy())
        except Exception as exc:  # noqa: BLE001 - runtime errors of the exported graph (shape baked in, ...)
            raise JobError(f"the exported {fmt} file {path} fails on input {shape}: {_first_lines(exc)}") from exc
        key = "x".join(map(str, shape))
        if got.shape != want.shape:
            raise JobError(f"the exported {fmt} file {path} returns {got.shape} for input {shape}, expected "
                           f"{want.shape}")
        errors[key] = float(np.abs(got - want).max())
        log.info("%s export vs PyTorch on %s: max abs error %.3g", fmt, key, errors[key])
        if not errors[key] <= tolerance:
            raise JobError(f"the exported {fmt} file {path} differs from PyTorch by {errors[key]:.3g} on input "
                           f"{shape} (tolerance {tolerance:g})")
    return errors


def onnx_session(path: str | Path, threads: int | None = None):
    """An onnxruntime CPU session with every graph optimisation on (ORT_ENABLE_ALL: constant folding, node fusions,
    NCHWc layouts) and `threads` intra-op threads (None: one per physical core, onnxruntime's default)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _onnx_runner(path: Path, threads: int | None = None):
    session = onnx_session(path, threads)
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})[0]


def _torchscript_runner(path: Path):
    module = torch.jit.load(str(path), map_location="cpu").eval()

    def run(x: np.ndarray) -> np.ndarray:
        # the plain interpreter: the profiling executor re-optimises per new shape (minutes on 2 cores, same numbers)
        with torch.no_grad(), torch.jit.optimized_execution(False):
            return module(torch.from_numpy(x)).numpy()
    return run


def run_of(model_uri: str) -> str | None:
    """The MLflow run behind `runs:/<id>/...` or a registered/logged `models:/` URI; None for checkpoints."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from jobs.model_uri import resolve_registered

    if model_uri.startswith("runs:/"):
        return model_uri[len("runs:/"):].split("/", 1)[0] or None
    if not model_uri.startswith("models:/"):
        return None
    client = MlflowClient()
    ref = resolve_registered(model_uri)
    try:
        if ref is not None:
            return client.get_model_version(ref.name, ref.version).run_id
        model_id = model_uri[len("models:/"):].split("/", 1)[0]
        return client.get_logged_model(model_id).source_run_id
    except MlflowException as exc:
        log.warning("cannot find the MLflow run of %s (%s); the export is not logged", model_uri, exc)
        return None


def _log_artifact(run_id: str, path: Path) -> str:
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    client.log_artifact(run_id, str(path), artifact_path=ARTIFACT_DIR)
    uri = f"runs:/{run_id}/{ARTIFACT_DIR}/{path.name}"
    log.info("logged %s to MLflow run %s as %s", path, run_id, uri)
    return uri
