"""Encode tasks on a Ray cluster (`--ray [ADDRESS]`): the same `run_task` as the local pool, as Ray tasks spread
over the nodes, results collected in plan order by the driver, which alone writes shards and the manifest.

What the nodes must share: the Python environment (same packages) and the input files at the same paths (relative
input paths are resolved against the driver's working directory, which must exist on every node). The code of
`data_prep` and `formats` is shipped with the job (Ray `py_modules`); the output directory is only written by the
driver. Ray imports stay inside functions: `import data_prep` never needs Ray.
"""
from __future__ import annotations

import logging
import os
import socket
import sys
from collections import Counter, deque
from pathlib import Path
from types import ModuleType
from typing import Iterator

from .sources import InputError
from .tasks import Task, TaskResult, run_task, worker_init

log = logging.getLogger(__name__)

#: Ray settings for a cluster started on one machine: ports on loopback only, no token auth, no usage reporting,
#: workers not niced (on a shared machine a niced worker starves). A value the user set wins.
LOCAL_RAY_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_DEDUP_LOGS": "0",
    "RAY_worker_niceness": "0",
}

IN_FLIGHT_PER_CPU = 2  # chunks queued per cluster CPU: enough to keep every node busy, bounded driver memory


def connect_ray(address: str | None, packages: list[ModuleType]) -> bool:
    """Attach to the Ray cluster at `address` (as `ray.init` takes it: "auto", "host:port", "ray://..."), or with
    None to $RAY_ADDRESS / the cluster `ray start` left on this machine / a new local one. `packages` are shipped to
    every node as `py_modules`. Returns True when this call connected (the caller then calls `ray.shutdown`)."""
    import ray

    if ray.is_initialized():
        return False
    runtime_env: dict = {"py_modules": [str(Path(m.__file__).parent) for m in packages]}
    if not address and not os.environ.get("RAY_ADDRESS"):
        # this machine's Ray (found or started): loopback defaults; never for a named cluster, whose nodes must
        # reach this driver at a routable address
        for key, value in LOCAL_RAY_ENV.items():
            os.environ.setdefault(key, value)
        runtime_env["env_vars"] = {k: os.environ[k] for k in LOCAL_RAY_ENV}
    ray.init(address=address or None, log_to_driver=True, logging_level=logging.WARNING, runtime_env=runtime_env)
    nodes = [n for n in ray.nodes() if n["Alive"]]
    log.info("Ray cluster: %d node(s), %s CPUs", len(nodes), ray.cluster_resources().get("CPU", 0))
    return True


def enter_driver_cwd(cwd: str) -> None:
    """Resolve relative input paths as the driver does; a node that lacks the directory cannot see the inputs."""
    if os.getcwd() == cwd:
        return
    if not os.path.isdir(cwd):
        raise InputError(f"Ray node {socket.gethostname()} has no directory {cwd} (the driver's working directory): "
                         "input files must be on a filesystem every node sees at the same path")
    os.chdir(cwd)


def encode_chunk(tasks: list[Task], encoding: str, cwd: str) -> tuple[str, list[TaskResult]]:
    """Ray task body: (node id, one result per task) for a few consecutive tasks."""
    import ray

    from . import encoders  # noqa: F401 - registers the sample encoders in this worker

    enter_driver_cwd(cwd)
    worker_init()
    return ray.get_runtime_context().get_node_id(), [run_task(t, encoding) for t in tasks]


class RayExecutor:
    """Runs tasks as Ray tasks (one CPU each, spread over the nodes), a bounded number of chunks in flight, and
    yields their results in task order. Connects on `start` and disconnects on `close` unless Ray was already
    initialised in this process. `samples_per_node` counts what each node encoded."""

    def __init__(self, address: str | None) -> None:
        self.address = address
        self.samples_per_node: Counter[str] = Counter()
        self._connected = False
        self._pending: deque = deque()

    def start(self, n_tasks: int) -> None:
        import formats

        try:
            self._connected = connect_ray(self.address, [sys.modules[__package__], formats])
        except (ConnectionError, ValueError) as exc:  # no cluster there, a malformed address
            where = self.address or "$RAY_ADDRESS or this machine"
            raise InputError(f"cannot use the Ray cluster at {where}: {exc}") from exc

    def results(self, tasks: list[Task], encoding: str) -> Iterator[TaskResult]:
        import ray
        from ray.exceptions import RayTaskError

        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        size = max(1, min(8, len(tasks) // (cpus * 8)))
        chunks = iter([tasks[i:i + size] for i in range(0, len(tasks), size)])
        remote = ray.remote(num_cpus=1, scheduling_strategy="SPREAD")(encode_chunk)
        cwd = os.getcwd()

        def submit() -> None:
            chunk = next(chunks, None)
            if chunk is not None:
                self._pending.append(remote.remote(chunk, encoding, cwd))

        for _ in range(cpus * IN_FLIGHT_PER_CPU):
            submit()
        while self._pending:
            try:
                node, done = ray.get(self._pending.popleft())
            except RayTaskError as exc:  # the worker's own exception (OSError naming a file, InputError, ...)
                log.debug("Ray task failed:\n%s", exc)
                raise exc.cause if isinstance(exc.cause, Exception) else exc
            submit()
            self.samples_per_node[node] += len(done)
            yield from done

    def close(self) -> None:
        import ray

        if ray.is_initialized():
            for ref in self._pending:
                ray.cancel(ref, force=True)
        self._pending.clear()
        if self.samples_per_node:
            log.info("encoded on %d Ray node(s): %s", len(self.samples_per_node),
                     ", ".join(f"{n[:8]} {c}" for n, c in self.samples_per_node.most_common()))
        if self._connected:
            ray.shutdown()
            self._connected = False
