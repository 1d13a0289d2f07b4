"""Driver side of `train`: checks, MLflow run, TorchTrainer set-up, and model registration after fit()."""
from __future__ import annotations

import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from formats.manifest import REMEDY, ManifestError, read_manifest
from jobs.config import TrainConfig, flatten, to_yaml
from jobs.errors import JobError, NonFiniteLossError, TrainingInterrupted, first_line

log = logging.getLogger(__name__)


@dataclass
class TrainOutcome:
    """What a finished `train` produced."""
    run_name: str
    run_dir: str
    mlflow_run_id: str
    tracking_uri: str
    checkpoint_path: str | None
    model_uri: str | None
    model_version: str | None
    step: int
    seconds: float
    images_per_second: float | None
    stopped_by_time_budget: bool = False  # optim.max_train_minutes ended this invocation before optim.epochs


def check_dataset(dataset_dir: str, photo_ratio: float = 0.0) -> None:
    """Fail before Ray starts when the shard directory is missing or lacks the training shards the config asks for."""
    try:
        manifest = read_manifest(dataset_dir)
    except ManifestError as exc:
        raise JobError(str(exc)) from exc
    if photo_ratio > 0 and not manifest.shards_of("photo"):
        raise JobError(f"{manifest.path} lists no photo- shards but data.photo_ratio is {photo_ratio:g}; prepare an "
                       "image + alpha dataset with `--photos` (e.g. python -m data_prep am2k ... --photos) or set "
                       "data.photo_ratio=0")
    if photo_ratio < 1 and not manifest.shards_of("fg", "train"):
        raise JobError(f"{manifest.path} lists no fg-/train- shards to train on; "
                       + REMEDY.format(dir=dataset_dir))


def check_cluster_fits(cfg: TrainConfig, resources: dict[str, float],
                       nodes: list[dict[str, float]] | None = None) -> None:
    """Refuse a worker group the Ray cluster cannot place: Ray would otherwise wait for GPUs or CPUs that never come
    (Ray Train retries a group that cannot start without end). `resources` is `ray.cluster_resources()`, `nodes`
    each live node's resources: each worker's CPUs and GPU must fit on one node, so totals alone are not enough (a
    GPU-less head's CPUs cannot host a GPU worker). Autoscaling clusters that add nodes on demand report only what
    they have now: start with the nodes the job needs."""
    sc = cfg.scaling
    gpus, cpus = float(resources.get("GPU", 0)), float(resources.get("CPU", 0))
    if sc.use_gpu and gpus < sc.num_workers:
        fix = (f"set scaling.num_workers={int(gpus)}" if gpus >= 1 else "set scaling.use_gpu=false")
        raise JobError(f"scaling.num_workers={sc.num_workers} with scaling.use_gpu=true needs {sc.num_workers} "
                       f"GPU(s) (one per worker), but the Ray cluster has {gpus:g}: {fix}, or add GPU nodes")
    if cpus < sc.num_workers * sc.cpus_per_worker:
        raise JobError(f"scaling.num_workers={sc.num_workers} × scaling.cpus_per_worker={sc.cpus_per_worker} needs "
                       f"{sc.num_workers * sc.cpus_per_worker} CPUs, but the Ray cluster has {cpus:g}: lower one of "
                       "them (or scaling.local_num_cpus for the embedded local cluster), or add nodes")
    if nodes is None:
        return
    per_node = [_workers_on(node, sc.cpus_per_worker, sc.use_gpu) for node in nodes]
    if sum(per_node) < sc.num_workers:
        shapes = "; ".join(f"{node.get('CPU', 0):g} CPU, {node.get('GPU', 0):g} GPU" for node in nodes)
        raise JobError(f"scaling.num_workers={sc.num_workers} workers of {sc.cpus_per_worker} CPU"
                       + (" and 1 GPU" if sc.use_gpu else "") + f" each: the cluster's nodes ({shapes}) hold only "
                       f"{sum(per_node)} of them (a worker's CPUs and GPU must be on one node); lower "
                       "scaling.cpus_per_worker or scaling.num_workers, or start the GPU nodes with more CPUs")


def _workers_on(node: dict[str, float], cpus: int, gpu: bool) -> int:
    """How many training workers one node's resources hold."""
    fit = int(node.get("CPU", 0) // cpus) if cpus > 0 else 1 << 30
    return min(fit, int(node.get("GPU", 0))) if gpu else fit


def _storage_path(cfg: TrainConfig) -> str:
    """An absolute local path, or the URI as given; an s3:// location whose bucket is missing is refused before Ray
    starts (Ray would fail only after the MLflow run exists)."""
    from formats import object_store

    sp = cfg.run.storage_path
    if object_store.is_remote(sp):
        try:
            object_store.require_bucket(sp)
        except object_store.ObjectStoreError as exc:
            raise JobError(f"run.storage_path={exc}") from exc
        return sp.rstrip("/")
    return sp if "://" in sp else os.path.abspath(os.path.expanduser(sp))  # not through symlinks: see submit.py


def ray_storage(storage: str) -> dict[str, Any]:
    """RunConfig's storage arguments. An s3:// location goes to Ray with formats/object_store's filesystem, so the
    checkpoints use the same endpoint (AWS_ENDPOINT_URL) and credentials as the datasets, whatever pyarrow's URI
    resolution would pick by itself."""
    from formats import object_store

    if object_store.is_remote(storage):
        return {"storage_path": object_store.fs_path(storage), "storage_filesystem": object_store.filesystem()}
    return {"storage_path": storage}


def checkpoint_location(storage: str, path: str | None) -> str | None:
    """A checkpoint's path as the user knows it: with its s3:// scheme when it lives in object storage."""
    from formats import object_store

    if path is None or not object_store.is_remote(storage) or object_store.is_remote(path):
        return path
    return object_store.SCHEME + path.lstrip("/")


def run_training(cfg: TrainConfig) -> TrainOutcome:
    """Train with Ray Train, log to MLflow, register the final model. Same run name + storage path = resume."""
    from jobs import ray_env, tracking

    t_start = time.time()
    ray_env.set_local_defaults() if not os.environ.get("RAY_ADDRESS") else None
    cfg.data.dataset_dir = os.path.abspath(os.path.expanduser(cfg.data.dataset_dir)) \
        if "://" not in cfg.data.dataset_dir else cfg.data.dataset_dir
    check_dataset(cfg.data.dataset_dir, cfg.data.photo_ratio)
    storage = _storage_path(cfg)
    tracking_uri = tracking.resolve_tracking_uri(cfg.tracking.tracking_uri)
    tracking.check_tracking_reachable(tracking_uri)
    cfg.run.storage_path = storage
    name = cfg.run.name or time.strftime("a2u-%Y%m%d-%H%M%S")
    cfg.run.name = name
    run_dir = f"{storage.rstrip('/')}/{name}"
    local_run_dir = None if "://" in storage else run_dir

    started_local = ray_env.connect(cfg.scaling.local_num_cpus)
    previous_sigterm = _sigterm_as_interrupt()  # after ray.init, whose own SIGTERM handler aborts the process
    try:
        import ray

        check_cluster_fits(cfg, ray.cluster_resources(),  # before an MLflow run exists for a job that cannot start
                           [n["Resources"] for n in ray.nodes() if n.get("Alive")])
        experiment_id = tracking.ensure_experiment(tracking_uri, cfg.tracking.experiment,
                                                   cfg.tracking.artifact_location)
        run_id, resumed = tracking.find_or_create_run(tracking_uri, experiment_id, run_dir, name)
        tracking.log_params_once(tracking_uri, run_id, flatten(cfg.to_dict()))
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri, tracking_uri)  # not the process-wide registry URI
        client.log_text(run_id, to_yaml(cfg), f"config/resolved{'_resume_' + time.strftime('%H%M%S') if resumed else ''}.yaml")
        log.info("MLflow run %s (%s) at %s%s", run_id, name, tracking_uri, " — resuming" if resumed else "")

        from jobs.train_loop import BUDGET_KEY, NONFINITE_KEY

        tags = client.get_run(run_id).data.tags
        for key in (NONFINITE_KEY, BUDGET_KEY):  # left by an earlier invocation
            if key in tags:
                client.delete_tag(run_id, key)
        try:
            result = _fit(cfg, name, storage, run_id, tracking_uri, local_run_dir)
        except KeyboardInterrupt:
            _mark_run(client, run_id, "KILLED")
            raise
        except BaseException:
            _mark_run(client, run_id, "FAILED")
            raise
    finally:
        if previous_sigterm is not None:
            signal.signal(signal.SIGTERM, previous_sigterm)
        if started_local:
            ray.shutdown()

    ckpt_path = checkpoint_location(storage, result.checkpoint.path if result.checkpoint is not None else None)
    bad_step = _nonfinite_tag(client, run_id, result)
    if bad_step is not None:
        _mark_run(client, run_id, "FAILED")
        raise NonFiniteLossError(f"training stopped: the loss became NaN/inf at step {bad_step}; "
                                 f"the last good checkpoint is {ckpt_path}. Lower optim.lr or check the data.")
    if result.checkpoint is None:
        _mark_run(client, run_id, "FAILED")
        raise JobError(f"training of {name} finished without a checkpoint (see the Ray logs under {run_dir})")

    model_uri = version = None
    state = _load_final_state(result.checkpoint)
    stopped = _note_budget_stop(client, run_id, cfg, result, int(state["step"]), name, storage)
    already = (tracking.registered_version(client, cfg.tracking.registered_model_name, run_id, int(state["step"]))
               if cfg.tracking.log_model else None)
    if already is not None:  # a finished run invoked again: nothing new to register
        model_uri, version = f"models:/{cfg.tracking.registered_model_name}/{already}", already
        log.info("%s is already registered as version %s at step %s: not registering it again",
                 name, version, state["step"])
    elif cfg.tracking.log_model:
        net = _net_from_state(state)
        t0 = time.time()
        try:
            info = tracking.log_and_register_model(net, tracking_uri, run_id, cfg.tracking.registered_model_name,
                                                   cfg.tracking.serialization_format, step=int(state["step"]))
        except tracking.tracking_errors() as exc:
            raise JobError(f"training of {name} finished (checkpoint {ckpt_path}) but the model could not be logged "
                           f"to MLflow at {tracking_uri}: {first_line(exc)}\nrerun the same "
                           f"command with run.name={name} run.storage_path={storage} once tracking answers: it "
                           "resumes at the end and registers the model") from exc
        model_uri, version = info["model_uri"], info["version"]
        log.info("logged the model (%s, %.1f s) and registered %s version %s", info["serialization_format"],
                 time.time() - t0, cfg.tracking.registered_model_name, version)
    _mark_run(client, run_id, "FINISHED")
    ips = _mean_images_per_second(client, run_id)
    return TrainOutcome(name, run_dir, run_id, tracking_uri, ckpt_path, model_uri, version, int(state["step"]),
                        time.time() - t_start, ips, stopped)


def _note_budget_stop(client, run_id: str, cfg: TrainConfig, result, step: int, name: str, storage: str) -> bool:
    """Whether the time budget ended this invocation (the last checkpoint's report says so); if it did, say so in
    the log and as an MLflow tag on the run, so a registered model trained for fewer steps than its config asks is
    never mistaken for the full recipe."""
    from jobs.train_loop import BUDGET_KEY

    if not (result.metrics or {}).get(BUDGET_KEY):
        return False
    log.warning("training stopped by optim.max_train_minutes=%s at step %d, before the %d epochs of optim.epochs; "
                "the model as it is now is the run's result. Rerun with run.name=%s run.storage_path=%s to continue "
                "from this checkpoint", cfg.optim.max_train_minutes, step, cfg.optim.epochs, name, storage)
    _unless_tracking_down(f"tag MLflow run {run_id} {BUDGET_KEY}",
                          lambda: client.set_tag(run_id, BUDGET_KEY, str(step)))
    return True


def _sigterm_as_interrupt():
    """Make SIGTERM end the driver as Ctrl-C does (the MLflow run is marked KILLED, not left RUNNING): `ray job stop`
    sends it to a submitted job, SIGKILL following a few seconds later. Returns the handler it replaced (None off the
    main thread, where Python cannot set handlers)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def interrupt(signum, frame):
        raise KeyboardInterrupt("terminated (SIGTERM)")

    return signal.signal(signal.SIGTERM, interrupt)


def _mark_run(client, run_id: str, status: str) -> None:
    """End the MLflow run with `status`, warning only on a tracking outage."""
    _unless_tracking_down(f"mark MLflow run {run_id} {status}", lambda: client.set_terminated(run_id, status=status))


def _unless_tracking_down(what: str, call: Callable[[], object]) -> None:
    """`call()`, only warning (`could not <what>`) on a tracking outage: the run's marks and tags come after the
    training itself, and an outage must never hide its real outcome (or the resume hint) behind a second traceback."""
    from jobs.tracking import tracking_errors

    try:
        call()
    except tracking_errors() as exc:
        log.warning("could not %s (tracking unreachable: %s)", what, first_line(exc, 200))


def _nonfinite_tag(client, run_id: str, result) -> str | None:
    """The step of a NaN/inf stop: rank 0's return value, else the workers' MLflow tag, else their last Ray report.
    The return value comes first: it does not depend on the workers having reached the tracking server."""
    from jobs.tracking import tracking_errors
    from jobs.train_loop import NONFINITE_KEY

    returned = getattr(result, "return_value", None)
    if isinstance(returned, dict) and returned.get(NONFINITE_KEY) is not None:
        return str(int(returned[NONFINITE_KEY]))
    try:
        return client.get_run(run_id).data.tags.get(NONFINITE_KEY)
    except tracking_errors():
        value = (result.metrics or {}).get(NONFINITE_KEY)
        return None if value is None else str(int(value))


def _fit(cfg: TrainConfig, name: str, storage: str, run_id: str, tracking_uri: str, local_run_dir: str | None):
    from jobs import ray_env, tracking
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from jobs.train_loop import train_loop_per_worker

    class InterruptibleTrainer(TorchTrainer):
        """Notes a SIGINT before Ray's own handler aborts the run, so the outcome can be told from a failure."""

        interrupted = False

        def _register_sigint_handler(self, controller) -> None:
            super()._register_sigint_handler(controller)
            ray_handler = signal.getsignal(signal.SIGINT)

            def handler(signum, frame):
                self.interrupted = True
                if callable(ray_handler):
                    ray_handler(signum, frame)

            signal.signal(signal.SIGINT, handler)

    trainer = InterruptibleTrainer(
        train_loop_per_worker,
        train_loop_config={"cfg": cfg.to_dict(), "mlflow_run_id": run_id, "tracking_uri": tracking_uri,
                           "run_dir": local_run_dir},
        torch_config=TorchConfig(backend="nccl" if cfg.scaling.use_gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=cfg.scaling.num_workers, use_gpu=cfg.scaling.use_gpu,
                                     resources_per_worker={"CPU": cfg.scaling.cpus_per_worker,
                                                           **({"GPU": 1} if cfg.scaling.use_gpu else {})}),
        run_config=RunConfig(name=name, **ray_storage(storage),
                             checkpoint_config=CheckpointConfig(num_to_keep=cfg.checkpoint.num_to_keep),
                             failure_config=FailureConfig(max_failures=cfg.checkpoint.max_failures),
                             worker_runtime_env={"env_vars": {
                                 "MLFLOW_TRACKING_URI": tracking_uri, **tracking.s3_artifact_env(),
                                 ray_env.LOG_LEVEL_ENV: logging.getLevelName(logging.getLogger().getEffectiveLevel())}}),
    )
    resume = f"rerun with run.name={name} run.storage_path={storage} to resume from its last checkpoint"
    try:
        result = trainer.fit()
    except BaseException as exc:
        from ray.train import TrainingFailedError

        # Ray's handler aborted the controller on Ctrl-C (its error, or a SystemExit, lands here), or SIGTERM raised
        if trainer.interrupted or isinstance(exc, KeyboardInterrupt):
            raise TrainingInterrupted(f"training run {name} interrupted; {resume}") from exc
        if isinstance(exc, TrainingFailedError):
            raise JobError(f"training run {name} failed after {cfg.checkpoint.max_failures} allowed restart(s): "
                           f"{str(exc).strip().splitlines()[-1][:500]}\n{resume}") from exc
        raise
    if trainer.interrupted:
        raise TrainingInterrupted(f"training run {name} interrupted; {resume}")
    return result


def _load_final_state(checkpoint) -> dict[str, Any]:
    from jobs.checkpointing import read_checkpoint

    with checkpoint.as_directory() as d:
        return read_checkpoint(d)


def _net_from_state(state: dict[str, Any]):
    """A plain (non-DDP, non-SyncBN) net with the checkpoint's weights."""
    from model.net import A2UMatting

    net = A2UMatting(**state["config"]["model"]["options"])
    net.load_state_dict(state["model"])
    return net.eval()


def _mean_images_per_second(client, run_id: str) -> float | None:
    """Median of the logged per-step throughput (the first steps include warm-up)."""
    import statistics

    from jobs.tracking import tracking_errors

    try:
        hist = client.get_metric_history(run_id, "train/images_per_second")
    except tracking_errors() as exc:  # the model is registered already: a missing figure must not fail the job
        log.warning("could not read train/images_per_second of run %s: %s", run_id, exc)
        return None
    values = [m.value for m in sorted(hist, key=lambda m: m.step)][3:] or [m.value for m in hist]
    return statistics.median(values) if values else None
