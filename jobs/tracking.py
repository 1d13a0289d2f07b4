"""MLflow plumbing: tracking-URI resolution and a fail-fast reachability check, run creation/resume, a step logger
that only publishes steps already covered by a checkpoint, and model logging/registration with a dynamic signature."""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from jobs.errors import JobError, first_line

log = logging.getLogger(__name__)

RUN_KEY_TAG = "a2u.run_key"           # "<storage_path>/<name>" of the Ray run this MLflow run belongs to
LAST_STEP_TAG = "a2u.last_logged_step"  # highest training step whose metrics are in MLflow (dedupe on resume)
STEP_TAG = "a2u.step"                # on a model version: the training step of the weights it holds
LOCAL_HOSTS = ("127.0.0.1", "localhost")


# The embedded default store, used by every command (train, demo, evaluate, predict, export) unless a tracking URI
# is given: one place, so that what the demo registers is what `predict --model models:/...` finds.
DEFAULT_STORE = Path("runs") / "mlflow.db"


def s3_artifact_env() -> dict[str, str]:
    """MLFLOW_S3_ENDPOINT_URL (the endpoint MLflow's S3 artifact store uses) taken from AWS_ENDPOINT_URL when only
    the latter is set, so that artifacts reach the same S3-compatible server as datasets and checkpoints. Set in this
    process, and returned for Ray workers' environments; empty when neither is set."""
    endpoint = os.environ.get("MLFLOW_S3_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL")
    if not endpoint:
        return {}
    os.environ.setdefault("MLFLOW_S3_ENDPOINT_URL", endpoint)
    return {"MLFLOW_S3_ENDPOINT_URL": os.environ["MLFLOW_S3_ENDPOINT_URL"]}


def resolve_tracking_uri(configured: str | None = None, base_dir: str | Path | None = None) -> str:
    """Config value, else $MLFLOW_TRACKING_URI, else the embedded default `sqlite:///<base_dir or cwd>/runs/mlflow.db`
    (relative sqlite paths are made absolute so that Ray workers with another cwd open the same file). Every command
    resolves its store here, so this is also where the S3 artifact endpoint is set (`s3_artifact_env`)."""
    s3_artifact_env()
    uri = configured or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        uri = f"sqlite:///{Path(base_dir or os.getcwd()).resolve() / DEFAULT_STORE}"
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        # make a relative sqlite path absolute so Ray workers (other cwd) open the same file
        rel = uri[len("sqlite:///"):]
        if not os.path.isabs(rel):
            uri = f"sqlite:///{Path(rel).resolve()}"
    return uri


def use_tracking_uri(configured: str | None = None, *, must_exist: bool = False, reachable: bool = False) -> str:
    """Resolve the tracking URI (see `resolve_tracking_uri`), make it MLflow's tracking and registry URI, return it.

    `must_exist`: for commands that read a registered model, a local sqlite store that does not exist is an error
    naming where it looked, instead of an empty database made as a side effect. With `must_exist` or `reachable`
    (commands that log runs) the store is checked once here (`check_tracking_reachable`): a server that never
    answers fails in seconds, not after MLflow's retries."""
    import mlflow

    uri = resolve_tracking_uri(configured)
    db = sqlite_path(uri)
    if must_exist and db is not None and not db.is_file():
        raise JobError(f"no MLflow store at {db}: train a model first (`make demo` registers one there), or point "
                       "--tracking-uri / $MLFLOW_TRACKING_URI at your tracking server or database")
    if must_exist or reachable:
        check_tracking_reachable(uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def sqlite_path(uri: str) -> Path | None:
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


def check_tracking_reachable(uri: str, timeout_s: float = 5.0) -> None:
    """Fail at start (not after hours of training) when the tracking server or database cannot be used."""
    if uri.startswith(("http://", "https://")):
        import requests

        try:
            resp = requests.get(uri.rstrip("/") + "/health", timeout=timeout_s)
        except requests.RequestException as exc:
            raise JobError(f"MLflow tracking server {uri} is unreachable ({type(exc).__name__}: {exc}); "
                           "start it (`mlflow server --host 127.0.0.1 ...`) or fix MLFLOW_TRACKING_URI") from exc
        if resp.status_code != 200:
            raise JobError(f"MLflow tracking server {uri} answered /health with HTTP {resp.status_code}")
    elif uri.startswith("sqlite:///"):
        path = sqlite_path(uri)
        assert path is not None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise JobError(f"cannot create the MLflow database folder {path.parent}: {exc}") from exc
    elif uri.startswith("file:") or "://" not in uri:
        raise JobError(f"tracking URI {uri!r}: MLflow 3.17's file store is disabled; use sqlite:///<abs path>/mlflow.db "
                       "or an http:// server")
    client = _client(uri)
    try:
        client.search_experiments(max_results=1)
    except Exception as exc:  # noqa: BLE001 - any failure here means the store is unusable
        raise JobError(f"MLflow tracking URI {uri} is not usable: {exc}") from exc


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def ensure_experiment(uri: str, name: str, artifact_location: str | None = None) -> str:
    """Experiment id. A new one keeps its artifacts at `artifact_location` (e.g. s3://bucket/prefix), else, on a
    sqlite store, next to the database rather than in the cwd. An existing experiment keeps its location (MLflow
    cannot move it): a different one asked for is logged as a warning."""
    client = _client(uri)
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        if artifact_location and exp.artifact_location.rstrip("/") != artifact_location.rstrip("/"):
            log.warning("experiment %s already keeps its artifacts at %s, not at tracking.artifact_location=%s: "
                        "use another tracking.experiment for the new location", name, exp.artifact_location,
                        artifact_location)
        return exp.experiment_id
    location = artifact_location
    if location:
        from formats import object_store

        if object_store.is_remote(location):
            try:
                object_store.require_bucket(location)
            except object_store.ObjectStoreError as exc:
                raise JobError(f"tracking.artifact_location={exc}") from exc
    db = sqlite_path(uri)
    if db is not None and not location:
        location = (db.parent / "mlruns").resolve().as_uri()
    return client.create_experiment(name, artifact_location=location)


def find_or_create_run(uri: str, experiment_id: str, run_key: str, run_name: str) -> tuple[str, bool]:
    """(run_id, resumed): the MLflow run tagged with this Ray run's key, or a new one."""
    client = _client(uri)
    found = client.search_runs([experiment_id], filter_string=f"tags.`{RUN_KEY_TAG}` = '{run_key}'",
                               max_results=1, order_by=["attributes.start_time DESC"])
    if found:
        run_id = found[0].info.run_id
        client.update_run(run_id, status="RUNNING")
        return run_id, True
    run = client.create_run(experiment_id, run_name=run_name, tags={RUN_KEY_TAG: run_key})
    return run.info.run_id, False


def log_params_once(uri: str, run_id: str, params: dict[str, Any]) -> None:
    """Log params; on a resumed run only the new ones, and changed values as `resume.changed.<key>` tags
    (MLflow forbids changing a logged param)."""
    from mlflow.entities import Param, RunTag

    client = _client(uri)
    existing = client.get_run(run_id).data.params
    new, changed = [], []
    for key, value in params.items():
        text = str(value)[:6000]
        if key not in existing:
            new.append(Param(key, text))
        elif existing[key] != text:
            changed.append(RunTag(f"resume.changed.{key}", f"{existing[key]} -> {text}"[:5000]))
    for i in range(0, len(new), 100):
        client.log_batch(run_id, params=new[i:i + 100])
    if changed:
        client.log_batch(run_id, tags=changed)
        log.warning("resumed run %s with changed config: %s", run_id, ", ".join(t.key[15:] for t in changed))


def registered_version(client, name: str, run_id: str, step: int) -> str | None:
    """The version of `name` that this run registered at this training step, if any (so that invoking a finished run
    again does not register the same weights twice)."""
    for mv in client.search_model_versions(f"name='{name}' and run_id='{run_id}'"):
        if mv.tags.get(STEP_TAG) == str(step):
            return str(mv.version)
    return None


def tracking_errors() -> tuple[type[BaseException], ...]:
    """What a tracking outage raises: MLflow's own errors (HTTP after its retries, a locked or lost database) and
    plain connection failures."""
    import requests
    from mlflow.exceptions import MlflowException

    return MlflowException, requests.exceptions.RequestException, ConnectionError, TimeoutError


class StepLogger:
    """Buffers per-step metrics on rank 0 and publishes them only once a checkpoint holds those steps.

    A restart resumes from the last checkpoint, so nothing published is ever re-trained (no duplicates) and every
    step is published once its checkpoint exists (no gaps). `LAST_STEP_TAG` guards the rare case of a crash between
    publishing and the controller registering the checkpoint.

    A tracking outage does not stop training: what cannot be published stays buffered and is retried at the next
    flush, with one warning per outage; other calls go through `call`, which warns instead of raising. If the run's
    tag cannot be read at start, `fallback_last_logged` (what the checkpoint recorded) stands in for it.
    """

    def __init__(self, uri: str, run_id: str, fallback_last_logged: int = 0, client: Any = None) -> None:
        self.uri, self.run_id = uri, run_id
        self.client = client if client is not None else _client(uri)
        self._pending: list[tuple[str, float, int, int]] = []
        self._outage = False
        try:
            tag = self.client.get_run(run_id).data.tags.get(LAST_STEP_TAG)
            self.last_logged = int(tag) if tag is not None else 0
        except tracking_errors() as exc:
            self._warn(exc)
            self.last_logged = fallback_last_logged

    def _warn(self, exc: BaseException) -> None:
        if not self._outage:
            log.warning("MLflow tracking at %s is unreachable (%s): training goes on, metrics are buffered and "
                        "retried at each checkpoint", self.uri, first_line(exc, 200))
        self._outage = True

    def _recovered(self) -> None:
        if self._outage:
            log.warning("MLflow tracking at %s answers again: buffered metrics published", self.uri)
        self._outage = False

    def call(self, method: str, *args: Any, **kwargs: Any) -> bool:
        """`client.<method>(*args)`, warning instead of raising on a tracking outage; True when it went through."""
        try:
            getattr(self.client, method)(*args, **kwargs)
        except tracking_errors() as exc:
            self._warn(exc)
            return False
        self._recovered()
        return True

    def add(self, step: int, metrics: dict[str, float]) -> None:
        now = int(time.time() * 1000)
        self._pending.extend((k, float(v), now, step) for k, v in metrics.items())

    def flush(self, up_to_step: int) -> None:
        """Publish buffered metrics with step <= up_to_step (a checkpoint at that step now exists); during an outage
        they stay buffered for the next flush."""
        from mlflow.entities import Metric, RunTag

        ready = [m for m in self._pending if m[3] <= up_to_step and m[3] > self.last_logged]
        later = [m for m in self._pending if m[3] > up_to_step]
        if not ready:
            self._pending = later
            return
        metrics = [Metric(k, v, t, s) for k, v, t, s in ready]
        try:
            for i in range(0, len(metrics), 900):  # a resent batch only rewrites the same (key, step, value) points
                self.client.log_batch(self.run_id, metrics=metrics[i:i + 900])
            last = max(m.step for m in metrics)
            self.client.log_batch(self.run_id, tags=[RunTag(LAST_STEP_TAG, str(last))])
        except tracking_errors() as exc:
            self._warn(exc)
            return  # everything stays pending
        self._recovered()
        self.last_logged = last
        self._pending = later


def model_signature():
    """(-1, 4, -1, -1) float32 -> (-1, 1, -1, -1): any batch, any size (unnamed specs, see docs/stack.md, "MLflow")."""
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    return ModelSignature(inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 4, -1, -1))]),
                          outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 1, -1, -1))]))


def pip_requirements() -> list[str]:
    """Explicit pins (skips MLflow's slow inference and its local-version-label warning)."""
    from importlib.metadata import version

    return [f"torch=={version('torch').split('+')[0]}", f"numpy=={version('numpy')}", f"mlflow=={version('mlflow')}",
            f"scipy=={version('scipy')}"]


def log_and_register_model(net, uri: str, run_id: str, registered_name: str, serialization_format: str = "auto",
                           example_size: int = 64, step: int | None = None) -> dict[str, Any]:
    """Log the eval-mode net to the run and register it; returns {"model_uri", "version", "serialization_format"}.
    `step` (the training step of the weights) is tagged on the version, for `registered_version`.

    pt2 (torch.export) needs no source code on the consumer side; if export fails (or is not wanted) the net is
    pickled with `code_paths=[model/]` so the consumer can import it.
    """
    import mlflow
    import mlflow.pytorch
    import torch

    net = net.cpu().eval()
    example = np.random.default_rng(0).random((2, 4, example_size, example_size), dtype=np.float32)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    formats = ["pt2", "pickle"] if serialization_format == "auto" else [serialization_format]
    last_exc: Exception | None = None
    for fmt in formats:
        kwargs: dict[str, Any] = dict(name="model", signature=model_signature(), input_example=example,
                                      registered_model_name=registered_name, pip_requirements=pip_requirements(),
                                      serialization_format=fmt)
        if fmt == "pickle":
            kwargs["code_paths"] = [str(Path(__file__).resolve().parents[1] / "model")]
        try:
            with mlflow.start_run(run_id=run_id), torch.no_grad():
                info = mlflow.pytorch.log_model(net, **kwargs)
        except Exception as exc:  # noqa: BLE001 - export failures come in many types; fall back and say why
            last_exc = exc
            if fmt == "pt2" and len(formats) > 1:
                log.warning("torch.export of the net failed (%s: %s); logging it with serialization_format=pickle",
                            type(exc).__name__, str(exc).splitlines()[0][:300])
                continue
            raise
        client = _client(uri)
        client.set_tag(run_id, "a2u.serialization_format", fmt)
        if step is not None:
            client.set_model_version_tag(registered_name, str(info.registered_model_version), STEP_TAG, str(step))
        return {"model_uri": info.model_uri, "version": info.registered_model_version,
                "serialization_format": fmt}
    raise JobError(f"could not log the model: {last_exc}")
