"""Helpers for the jobs tests: tiny training overrides, free loopback ports, servers started/stopped by PID."""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest
import requests
import torch
from mlflow.tracking import MlflowClient

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
DEMO_CONFIG = "jobs/configs/demo_cpu.yaml"
RAY_STOP_GRACE_S = 16.0  # `ray stop`'s default --grace-period before it escalates to SIGKILL

# real A2U net, smallest shapes that exercise everything: crop 64, batch 2 per worker, 3 steps per epoch
TINY = ["data.crop_size=64", "data.batch_size=2", "data.iterations_per_epoch=3", "optim.epochs=1",
        "optim.milestones=[5]", "val.max_samples=2", "checkpoint.every_n_steps=0", "tracking.log_every_n_steps=1"]


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(n: int) -> list[int]:
    """n distinct free loopback ports: all bound at once, so the kernel cannot hand the same one out twice (a server
    given one port for two of its listeners fails to start one of them)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


def child_env(**extra: str) -> dict[str, str]:
    """Environment for subprocesses: the venv first on PATH, loopback-only Ray without token auth."""
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
           "PYTHONPATH": str(REPO_ROOT)}
    env.update(extra)
    return env


def stop_process_group(proc: subprocess.Popen, timeout: float = 30.0) -> None:
    """SIGTERM the process (a session leader) and its children, SIGKILL what is left after `timeout`."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def wait_http(url: str, proc: subprocess.Popen, timeout: float, log: Path,
              accept: Callable[[requests.Response], bool] = lambda answer: True) -> None:
    """Poll `url` until it answers 200 and `accept` takes the answer; fail, with the server's log, if the server
    exits first or `timeout` runs out."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited early ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            answer = requests.get(url, timeout=2)
            if answer.status_code == 200 and accept(answer):
                return
        except (requests.RequestException, ValueError):   # ValueError: `accept` met a body that is not JSON
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} not ready after {timeout} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """One embedded local Ray for every training run of a test module (started and shut down there)."""
    import ray

    from jobs import ray_env

    started = ray_env.connect(num_cpus=2)
    yield
    if started:
        ray.shutdown()


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    """A real `mlflow server` on 127.0.0.1 (SQLite backend, local artifacts); yields its URL."""
    port = free_port()
    log = tmp_path / "mlflow_server.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            [str(VENV_BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
             "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
             "--artifacts-destination", str(tmp_path / "mlartifacts"), "--workers", "1"],
            stdout=fh, stderr=subprocess.STDOUT, env=child_env(), start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/health", proc, 90, log)
        yield url
    finally:
        stop_process_group(proc)


def _own_dashboard(temp_dir: str) -> Callable[[requests.Response], bool]:
    """`wait_http`'s test that an `/api/version` answer comes from the head started in `temp_dir` (its session's
    name): a port picked free can be taken by another server before Ray binds it, and that one must not pass for
    ours."""
    session = Path(temp_dir, "session_latest")
    return lambda answer: session.exists() and answer.json().get("session_name") == session.resolve().name


@pytest.fixture
def ray_head() -> Iterator[dict]:
    """A real `ray start --head --block` on 127.0.0.1 with its own temp dir and ports; yields its addresses. Started
    again on fresh ports (up to three times) if its dashboard does not come up as its own."""
    names = ("port", "dashboard-port", "ray-client-server-port", "dashboard-agent-listen-port",
             "dashboard-agent-grpc-port", "runtime-env-agent-port", "metrics-export-port", "node-manager-port",
             "object-manager-port")
    for attempt in range(3):
        temp_dir = tempfile.mkdtemp(prefix="rayt", dir="/tmp")  # short: Ray's unix sockets live under it
        ports = dict(zip(names, free_ports(len(names))))
        log = Path(temp_dir) / "ray_start.log"
        cmd = [str(VENV_BIN / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1", "--num-cpus=2",
               "--num-gpus=0", "--object-store-memory=268435456", "--include-dashboard=true",
               "--dashboard-host=127.0.0.1", "--disable-usage-stats", f"--temp-dir={temp_dir}",
               *(f"--{k}={v}" for k, v in ports.items())]
        with open(log, "w") as fh:
            # no PYTHONPATH: jobs must import the code shipped as the job's working_dir, not this checkout
            proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=child_env(PYTHONPATH=""),
                                    start_new_session=True)
        dashboard = f"http://127.0.0.1:{ports['dashboard-port']}"
        try:
            wait_http(f"{dashboard}/api/version", proc, 120, log, accept=_own_dashboard(temp_dir))
        except RuntimeError:
            stop_process_group(proc, timeout=RAY_STOP_GRACE_S)
            if attempt == 2:
                raise
            continue
        try:
            yield {"dashboard": dashboard, "gcs": f"127.0.0.1:{ports['port']}", "pid": proc.pid}
        finally:
            # `ray start --block` and its autoscaler monitor outlast a SIGTERM by minutes: give the group the grace
            # period `ray stop` gives (16 s), then SIGKILL what is left, as `ray stop` does
            stop_process_group(proc, timeout=RAY_STOP_GRACE_S)
        return


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A real A2U net (BN statistics moved off their defaults) registered as a2u-matting@champion in a sqlite store."""
    root = tmp_path_factory.mktemp("export_store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    from jobs.tracking import ensure_experiment, log_and_register_model
    from model.net import A2UMatting

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
