"""Tasks: the picklable description of one sample, the encoder registry they name, and the function any executor
runs on a task (a local process pool or a Ray cluster both call `run_task`, so they encode identically)."""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from formats.encoding import DEFAULT_ENCODING

from .images import BadInputError, to_raw_sample

#: encoder registry: task.fn -> function(*task.args) -> sample dict (`__key__` + encoded member bytes)
ENCODERS: dict[str, Callable[..., dict]] = {}

#: what an executor yields per task: (task digest, sample or None, bad-input record or None)
TaskResult = tuple[str, "dict | None", "dict | None"]


def encoder(name: str):
    """Register a sample encoder under `name` (tasks refer to encoders by name so they stay picklable)."""
    def deco(fn):
        ENCODERS[name] = fn
        return fn
    return deco


@dataclass(frozen=True)
class Task:
    """One sample to produce: shard kind, encoder name, its arguments, and a digest for resume checks."""

    kind: str
    fn: str
    args: tuple
    digest: str


def task_digest(*parts) -> str:
    """Stable digest of JSON-able parts (paths, sizes, mtimes, seeds, options)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def file_fingerprint(path: Path) -> list:
    """Path, size and mtime: cheap evidence that an input file has not changed since a shard was written."""
    st = os.stat(path)
    return [str(path), st.st_size, st.st_mtime_ns]


def run_task(task: Task, encoding: str = DEFAULT_ENCODING) -> TaskResult:
    """Encode one task; bad input comes back as data so the writing process decides (stop or skip)."""
    try:
        sample = ENCODERS[task.fn](*task.args)
        return task.digest, to_raw_sample(sample) if encoding == "raw" else sample, None
    except BadInputError as exc:
        return task.digest, None, {"path": exc.path, "problem": exc.problem, "kind": task.kind}


def worker_init() -> None:
    """Per encoding process: parallelism comes from processes, OpenCV threads would oversubscribe the cores."""
    import cv2

    cv2.setNumThreads(1)
