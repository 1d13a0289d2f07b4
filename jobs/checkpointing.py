"""Training checkpoints: one `state.pt` (model, optimiser, scheduler, position, every rank's RNG states, config,
MLflow run id) plus a small `meta.json` that can be read without torch."""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jobs.errors import JobError

STATE_FILE = "state.pt"
META_FILE = "meta.json"


def capture_rng_state() -> dict[str, Any]:
    """Python, NumPy, torch and (where CUDA is up) the current GPU's generator states of this process.

    Only the current GPU's: a worker trains on one device, and the GPUs visible to the restarted worker may be fewer
    or numbered differently."""
    state: dict[str, Any] = {"python": random.getstate(), "numpy": np.random.get_state(),
                             "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of `capture_rng_state`; the CUDA state goes to the current GPU (a list of per-GPU states: its first
    entry)."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(cuda[0] if isinstance(cuda, (list, tuple)) else cuda)


def write_checkpoint(directory: str | Path, state: dict[str, Any]) -> Path:
    """Write `state` (must hold step, epoch, batch_in_epoch, mlflow_run_id) into `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(state, directory / STATE_FILE)
    meta = {k: state[k] for k in ("step", "epoch", "batch_in_epoch", "mlflow_run_id", "world_size") if k in state}
    (directory / META_FILE).write_text(json.dumps(meta, indent=1))
    return directory


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load `state.pt` from a checkpoint directory (or the file itself).

    weights_only=False: the file also holds NumPy RNG states; only load checkpoints this project wrote.
    """
    path = Path(path)
    file = path / STATE_FILE if path.is_dir() else path
    if not file.is_file():
        raise JobError(f"{path} is not a training checkpoint (no {STATE_FILE} in it)")
    try:
        return torch.load(file, map_location=map_location, weights_only=False)
    except Exception as exc:  # noqa: BLE001
        raise JobError(f"cannot read checkpoint {file}: {exc}") from exc


def unwrap(net: torch.nn.Module) -> torch.nn.Module:
    """The plain module under DDP and/or torch.compile wrappers (its state_dict keys carry no prefixes)."""
    while True:
        if hasattr(net, "_orig_mod"):
            net = net._orig_mod
        elif isinstance(net, torch.nn.parallel.DistributedDataParallel):
            net = net.module
        else:
            return net
