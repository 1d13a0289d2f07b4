"""`submit`: run `python -m jobs train` on a Ray cluster through the Job Submission API, shipping this repository
as the working_dir (without data, venvs, runs or MLflow stores)."""
from __future__ import annotations

import asyncio
import logging
import os
import shlex
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

from jobs.config import load_config, parse_override
from jobs.errors import JobError
from jobs.ray_env import REPO_ROOT

log = logging.getLogger(__name__)

EXCLUDES = [".venv", "venv", ".git", "data", "runs", "mlruns", "mlartifacts", "mlflow.db", "*.tar", "*.idx",
            "__pycache__", ".pytest_cache", "*.pt", "*.pth", "benchmarks/out", "shared"]
DEFAULT_ADDRESS = "http://127.0.0.1:8265"
# environment forwarded to the job when set here (MLflow, Ray loopback/auth settings, the A2U reassembly backend)
FORWARDED_ENV = ("A2U_OPS_BACKEND", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_TRACKING_USERNAME",
                 "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN", "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
                 "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_AUTH_MODE", "RAY_USAGE_STATS_ENABLED", "RAY_DEDUP_LOGS")


def resolve_address(address: str | None) -> str:
    return address or os.environ.get("RAY_API_SERVER_ADDRESS") or (
        os.environ["RAY_ADDRESS"] if os.environ.get("RAY_ADDRESS", "").startswith("http") else DEFAULT_ADDRESS)


def _job_overrides(config: str, overrides: list[str]) -> tuple[list[str], dict[str, str]]:
    """Validate locally, then pin what must not depend on the job's temporary working_dir: absolute dataset and
    storage paths, and the tracking URI (a relative sqlite file inside working_dir would be lost)."""
    cfg = load_config(config, overrides)  # bad keys fail here, before anything is uploaded
    from jobs.tracking import LOCAL_HOSTS, check_tracking_reachable, resolve_tracking_uri

    extra: list[str] = []
    keys = {parse_override(o)[0] for o in overrides}
    # absolute, but not through symlinks: a path that is a symlink here may be a plain mount on the workers
    if "://" not in cfg.data.dataset_dir and not os.path.isabs(cfg.data.dataset_dir):
        extra.append(f"data.dataset_dir={os.path.abspath(cfg.data.dataset_dir)}")
    if "://" not in cfg.run.storage_path and not os.path.isabs(cfg.run.storage_path):
        extra.append(f"run.storage_path={os.path.abspath(cfg.run.storage_path)}")
    env: dict[str, str] = {k: os.environ[k] for k in FORWARDED_ENV if os.environ.get(k)}
    uri = resolve_tracking_uri(cfg.tracking.tracking_uri)
    check_tracking_reachable(uri)
    if "tracking.tracking_uri" not in keys and not cfg.tracking.tracking_uri:
        env["MLFLOW_TRACKING_URI"] = uri
    elif uri != cfg.tracking.tracking_uri:  # e.g. a relative sqlite path, which would land in the working_dir
        extra.append(f"tracking.tracking_uri={uri}")
    if uri.startswith("sqlite:"):
        log.warning("tracking to %s: fine for a cluster on this machine; for a real cluster start an MLflow "
                    "server and set MLFLOW_TRACKING_URI=http://HOST:PORT", uri)
    elif urlparse(uri).hostname in LOCAL_HOSTS:
        log.warning("tracking to %s: only processes on the node that runs that server reach it; training workers on "
                    "other nodes would lose their metrics: start the server on an address the nodes reach", uri)
    return overrides + extra, env


def submit(config: str, overrides: list[str], address: str | None = None, follow: bool = False,
           job_id: str | None = None) -> tuple[str, str | None]:
    """Submit and return (job id, final status or None when not following)."""
    from ray.job_submission import JobSubmissionClient

    addr = resolve_address(address)
    cfg_path = Path(config).resolve()
    try:
        rel_cfg = cfg_path.relative_to(REPO_ROOT)
    except ValueError:
        raise JobError(f"config {config} must live inside the repository ({REPO_ROOT}), which is what gets shipped")
    all_overrides, env = _job_overrides(config, overrides)
    entrypoint = " ".join(shlex.quote(x) for x in ["python", "-m", "jobs", "train", "--config", str(rel_cfg),
                                                   *all_overrides])
    try:
        client = JobSubmissionClient(addr)
    except Exception as exc:  # noqa: BLE001 - connection errors come as several types
        raise JobError(f"cannot reach the Ray job server at {addr}: {str(exc).splitlines()[0]} "
                       "(start it with `ray start --head --dashboard-host=127.0.0.1` or pass --address)") from exc
    runtime_env = {"working_dir": str(REPO_ROOT), "excludes": EXCLUDES, "env_vars": env}
    sid = client.submit_job(entrypoint=entrypoint, runtime_env=runtime_env, submission_id=job_id)
    print(f"submitted job {sid} to {addr}\n  entrypoint: {entrypoint}\n  logs: ray job logs --address {addr} -f {sid}",
          flush=True)
    if not follow:
        return sid, None
    return sid, _follow(client, sid)


def _follow(client, sid: str) -> str:
    async def tail() -> None:
        async for chunk in client.tail_job_logs(sid):
            sys.stdout.write(chunk)
            sys.stdout.flush()

    try:
        asyncio.run(tail())
    except KeyboardInterrupt:
        print(f"\nstopped following; job {sid} keeps running on the cluster (`ray job stop {sid}` stops it; "
              "submitting the same run.name again while it runs would start a second job on the same run)",
              file=sys.stderr, flush=True)
        raise
    from ray.job_submission import JobStatus

    for _ in range(60):  # the log stream can end a moment before the status turns terminal
        status = client.get_job_status(sid)
        if status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
            return str(status.value)
        time.sleep(1)
    return str(client.get_job_status(sid).value)
