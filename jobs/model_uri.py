"""Load a matting net from `models:/name@alias`, `models:/name/version`, `runs:/<id>/model`, any other MLflow model
URI, or a training checkpoint path — the one loader behind `evaluate` and `predict`."""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from jobs.errors import JobError, first_line

log = logging.getLogger(__name__)

_MLFLOW_SCHEMES = ("models:/", "runs:/", "mlflow-artifacts:/", "file:/", "s3://", "gs://", "http://", "https://")


@dataclass
class RegisteredRef:
    """The registry entry behind a `models:/` URI (None fields when the URI names no registered version)."""
    name: str
    version: str


class ExportedNet(torch.nn.Module):
    """Wraps a torch.export GraphModule (pt2-logged model): it is already in eval form, and GraphModules refuse
    `.train()/.eval()`, which inference code calls."""

    def __init__(self, graph_module: torch.nn.Module) -> None:
        super().__init__()
        self.graph_module = graph_module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.graph_module(x)

    def train(self, mode: bool = True) -> "ExportedNet":
        return self


def is_mlflow_uri(uri: str) -> bool:
    return uri.startswith(_MLFLOW_SCHEMES)


def resolve_registered(uri: str) -> RegisteredRef | None:
    """`models:/name@alias` or `models:/name/version` -> (name, version); None for other URIs."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    m = re.fullmatch(r"models:/([^/@]+)(?:@([^/]+)|/(\d+))", uri)
    if not m:
        return None
    name, alias, version = m.groups()
    client = MlflowClient()
    try:
        if alias:
            return RegisteredRef(name, str(client.get_model_version_by_alias(name, alias).version))
        return RegisteredRef(name, str(client.get_model_version(name, version).version))
    except MlflowException as exc:
        raise JobError(f"model {uri} not found in the registry at {_tracking()}: {first_line(exc)}") from exc


def _tracking() -> str:
    import mlflow

    return mlflow.get_tracking_uri()


def load_net(uri: str, device: str | torch.device = "cpu") -> torch.nn.Module:
    """An eval-mode net on `device` that maps N×4×H×W -> N×1×H×W.

    A pickled MLflow model is unpickled with this checkout's `model` package: MLflow puts the model's saved code
    first on `sys.path`, so in a process that has not imported `model` yet (a Ray actor, a script) the saved copy
    would be imported instead, and later fixes (kernels, inference) would silently not apply. A pt2 (torch.export)
    model is moved to `device` by re-targeting its graph: the devices of tensors it creates are fixed in the graph
    at export time, which MLflow's own loader cannot change."""
    import model.net  # noqa: F401 - binds `model` to this checkout before any saved code is on sys.path

    device = torch.device(device)
    path = Path(uri).expanduser()
    if not is_mlflow_uri(uri):
        if not path.exists():
            raise JobError(f"model {uri!r} is neither an existing checkpoint path nor an MLflow URI "
                           "(models:/name@alias, models:/name/<version>, runs:/<run_id>/model)")
        return _load_checkpoint(path, device)
    import mlflow.artifacts
    import mlflow.pytorch
    from mlflow.exceptions import MlflowException

    if uri.startswith("models:/"):
        resolve_registered(uri)  # clear error for an unknown name/alias/version before downloading anything
    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
        exported = _exported_program_file(local)
        if exported is not None:
            return _load_exported(exported, device)
        net = mlflow.pytorch.load_model(str(local), map_location=device)
    except MlflowException as exc:
        raise JobError(f"cannot load model {uri} from {_tracking()}: {first_line(exc)}") from exc
    except OSError as exc:
        raise JobError(f"cannot load model {uri}: {exc}") from exc
    return net.to(device).eval()


def _exported_program_file(local: Path) -> Path | None:
    """The pt2 archive of a downloaded MLflow pytorch model, None for a pickled one."""
    from mlflow.models import Model

    flavor = Model.load(str(local)).flavors.get("pytorch", {})
    candidate = local / flavor.get("model_data", "data") / "model.pt2"
    return candidate if candidate.is_file() else None


def _load_exported(archive: Path, device: torch.device) -> torch.nn.Module:
    from torch.export.passes import move_to_device_pass

    program = torch.export.load(str(archive))
    if device.type != "cpu":
        program = move_to_device_pass(program, device)
    return ExportedNet(program.module())


def _load_checkpoint(path: Path, device: torch.device) -> torch.nn.Module:
    from jobs.checkpointing import read_checkpoint
    from model.net import A2UMatting

    if path.is_dir() and not (path / "state.pt").exists():
        found = sorted(path.glob("checkpoint_*/state.pt"))  # a Ray run directory: take its newest checkpoint
        if not found:
            raise JobError(f"{path} holds no checkpoint (state.pt or checkpoint_*/state.pt)")
        path = found[-1]
    state = read_checkpoint(path)
    net = A2UMatting(**state["config"]["model"]["options"])
    net.load_state_dict(state["model"])
    log.info("loaded checkpoint %s (step %s)", path, state.get("step"))
    return net.to(device).eval()


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise JobError(f"--device {name}: not a device (cpu, cuda, cuda:N or auto)") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise JobError(f"--device {name} asked for, but no CUDA device is available")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise JobError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) visible "
                           f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')})")
    return device
