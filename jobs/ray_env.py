"""Ray connection: the embedded local cluster (loopback-only, no token auth) or the one in $RAY_ADDRESS."""
from __future__ import annotations

import logging
import os
from pathlib import Path

# every Ray port on 127.0.0.1, no token auth on the embedded single-machine cluster (defined once, in data_prep)
from data_prep.ray_executor import LOCAL_RAY_ENV

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]


def set_local_defaults() -> None:
    """Loopback/auth defaults for processes started here (a value the user already set wins)."""
    for key, value in LOCAL_RAY_ENV.items():
        os.environ.setdefault(key, value)


# Ray Train modules whose INFO lines drown the project's own progress lines: every `ray.train.report` of every rank
# logs the whole TrainingReport repr. They stay at WARNING unless debug logging is asked for (`python -m jobs -v`).
CHATTY_RAY_MODULES = ("ray.train.v2._internal.execution.context",
                      "ray.train.v2._internal.execution.checkpoint.checkpoint_manager")
LOG_LEVEL_ENV = "A2U_LOG_LEVEL"  # the driver's level, handed to the Ray Train workers


def chatty_ray_loggers() -> list[logging.Logger]:
    """The loggers of CHATTY_RAY_MODULES, under both names Ray uses for them (some modules name their logger after
    `__file__`, others after `__name__`)."""
    import importlib.util

    loggers = []
    for module in CHATTY_RAY_MODULES:
        loggers.append(logging.getLogger(module))
        spec = importlib.util.find_spec(module)
        if spec is not None and spec.origin:
            loggers.append(logging.getLogger(spec.origin))
    return loggers


def quiet_ray_logs() -> None:
    """worker_process_setup_hook and worker start: silence the V2 PlacementGroupCleaner's "Failed to query ... State
    API" warning, which repeats every few seconds when the dashboard (State API) is off (harmless), and keep Ray
    Train's per-report INFO lines at debug verbosity only."""
    logging.getLogger("ray.train.v2._internal.execution.controller.placement_group_cleaner").setLevel(logging.ERROR)
    if os.environ.get(LOG_LEVEL_ENV, "INFO").upper() != "DEBUG":
        for logger in chatty_ray_loggers():
            logger.setLevel(logging.WARNING)


def connect(num_cpus: int | None = None) -> bool:
    """Connect to $RAY_ADDRESS if set (bare `ray.init()`, as jobs require), else start a local cluster.

    Returns True when this call started a local cluster (the caller shuts it down).
    """
    import ray

    if ray.is_initialized():
        return False
    if os.environ.get("RAY_ADDRESS"):
        ray.init(log_to_driver=True)
        return False
    set_local_defaults()
    pythonpath = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    for attempt in (1, 2, 3):
        try:
            # address "local": a new local cluster even when `ray start --head` runs on this machine (a bare
            # ray.init() would attach to that one and then refuse num_cpus)
            ray.init(address="local", num_cpus=num_cpus or os.cpu_count() or 2, include_dashboard=False,
                     object_store_memory=256 * 1024 ** 2, configure_logging=True, logging_level=logging.WARNING,
                     runtime_env={"env_vars": {"PYTHONPATH": pythonpath, **LOCAL_RAY_ENV},
                                  "worker_process_setup_hook": "jobs.ray_env.quiet_ray_logs"})
            break
        except Exception as exc:  # noqa: BLE001 - Ray raises a bare Exception when the raylet is slow to start
            # the raylet must register within a hard-coded 30 s; on an overloaded machine that can fail
            ray.shutdown()
            if attempt == 3 or "timed out during startup" not in str(exc):
                raise
            log.warning("local Ray did not start in time (busy machine?); retrying (%d/3)", attempt + 1)
    log.info("started a local Ray cluster (%s CPUs)", ray.cluster_resources().get("CPU"))
    return True
