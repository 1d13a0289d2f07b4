"""`predict --ray`: alpha mattes for a folder of images on a Ray cluster with Ray Data. A fixed pool of actors
(`map_batches` with a callable class, `ActorPoolStrategy(size=actors)`) each loads the model once and maps batches
of (image, trimap or mask, matte path) rows to written mattes, with the same per-image step as local `predict`
(`jobs.predict.matte_of`), so the mattes are the same files.

Every image ends as one row of <out>/predictions.csv: written, skipped (its matte exists; --overwrite recomputes
it) or failed with the error, with the seconds it took and the actor (host:pid) that did it. Failed images make the command exit non-zero; they are never dropped. Mattes are
written by the actors, so --out, the inputs and a local MLflow store must be on a filesystem every node sees at the
same paths (relative paths are taken from the driver's working directory).
"""
from __future__ import annotations

import csv
import logging
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data_prep.trimaps import BandRadius
from jobs.errors import JobError
from jobs.inference_options import InferenceOptions

log = logging.getLogger(__name__)

CSV_NAME = "predictions.csv"
CSV_FIELDS = ("image", "guide", "matte", "status", "error", "seconds", "worker")
NOT_PROCESSED = "not processed (the Ray job stopped first)"


@dataclass
class BatchPredictResult:
    """What a Ray batch prediction did, one CSV row per input image."""

    csv_path: Path
    rows: list[dict]
    seconds: float

    def count(self, status: str) -> int:
        return sum(r["status"] == status for r in self.rows)


class MattePredictor:
    """Ray Data actor: the model loaded once per actor, then batches of rows -> mattes written, one status row each.

    An image that fails (unreadable, bad trimap, sizes differ, inference error) becomes a `failed` row with the
    error; the other images of the batch go on."""

    def __init__(self, model: str, tracking_uri: str, device: str, from_mask: bool, band: BandRadius,
                 options: InferenceOptions, driver_cwd: str) -> None:
        import mlflow

        from data_prep.ray_executor import enter_driver_cwd
        from jobs.model_uri import load_net, pick_device

        enter_driver_cwd(driver_cwd)
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(tracking_uri)
        self.net = load_net(model, pick_device(device))
        self.from_mask, self.band = from_mask, band
        self.options = options
        self.worker = f"{socket.gethostname()}:{os.getpid()}"

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from jobs.images import write_gray
        from jobs.predict import matte_of

        status, errors, seconds = [], [], []
        for image, guide, matte in zip(batch["image"], batch["guide"], batch["matte"]):
            t0 = time.perf_counter()
            try:
                alpha = matte_of(self.net, Path(image), Path(guide), from_mask=self.from_mask, band=self.band,
                                 options=self.options)
                write_gray(matte, alpha)
                status.append("written")
                errors.append("")
            except JobError as exc:
                status.append("failed")
                errors.append(str(exc))
            except Exception as exc:  # noqa: BLE001 - any other failure is still this image's row, not a lost one
                status.append("failed")
                errors.append(f"{image}: {type(exc).__name__}: {exc}")
            seconds.append(round(time.perf_counter() - t0, 3))
        return {**batch, "status": np.array(status), "error": np.array(errors), "seconds": np.array(seconds),
                "worker": np.array([self.worker] * len(status))}


def _write_csv(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)


def actor_resources(device: str, cluster_gpus: float, actors: int) -> tuple[int, int, str]:
    """(GPUs per actor, actor count, the device name each actor uses) for `device` on a cluster with `cluster_gpus`.

    Ray gives each GPU actor one GPU and makes it the only one the actor sees, so an actor always uses `cuda`
    (`cuda:0` is accepted as the same; another index cannot be honoured). Asking for more GPU actors than the cluster
    has GPUs would leave the extra ones pending and Ray Data waiting for them, so the pool is cut to the GPUs;
    asking for CUDA on a cluster without GPUs is an error here rather than a job that waits forever."""
    import torch

    if device == "auto":
        device = "cuda" if cluster_gpus >= 1 else "cpu"
    try:
        parsed = torch.device(device)
    except RuntimeError as exc:
        raise JobError(f"--device {device}: not a device (cpu, cuda or auto)") from exc
    if parsed.type != "cuda":
        return 0, actors, device
    if parsed.index not in (None, 0):
        raise JobError(f"--device {device} with --ray: Ray assigns each actor its GPU, which the actor sees as "
                       "cuda; use --device cuda")
    if cluster_gpus < 1:
        raise JobError(f"--device {device} with --ray: the Ray cluster has no GPU; use --device cpu (or auto), "
                       "or add GPU nodes")
    if actors > int(cluster_gpus):
        log.warning("--actors %d with --device %s: the cluster has %d GPU(s), so %d GPU actor(s) run", actors,
                    device, int(cluster_gpus), int(cluster_gpus))
    return 1, min(actors, int(cluster_gpus)), "cuda"


def run_batch_predict(model: str, image: str, trimap: str | None, out: str, *, address: str | None,
                      actors: int, batch_size: int, device: str = "auto", overwrite: bool = False,
                      mask: str | None = None, band: BandRadius | None = None,
                      options: InferenceOptions | None = None) -> BatchPredictResult:
    """Mattes for every image not done yet (all with `overwrite`) on `actors` Ray actors; the CSV lists every image.

    `address` is as `ray.init` takes it (None: $RAY_ADDRESS, this machine's running cluster, else a local one)."""
    import mlflow
    import ray

    import data_prep
    import formats
    import jobs
    import model as model_package
    from data_prep.ray_executor import connect_ray
    from jobs.predict import check_targets, predict_pairs

    t0 = time.time()
    pairs = predict_pairs(image, trimap, mask, out)
    check_targets(pairs, overwrite=True)  # an input is never an output; existing mattes are skipped below
    out_dir = Path(out).expanduser()
    csv_path = (out_dir if out_dir.is_dir() or len(pairs) > 1 else pairs[0][2].parent) / CSV_NAME
    todo = [(img, g, m) for img, g, m in pairs if overwrite or not m.exists()]
    rows = {str(img): {"image": str(img), "guide": str(g), "matte": str(m), "status": "skipped",
                       "error": "matte exists (--overwrite recomputes it)", "seconds": 0.0, "worker": ""}
            for img, g, m in pairs}
    for img, _, _ in todo:  # until its actor reports back
        rows[str(img)].update(status="failed", error=NOT_PROCESSED)
    log.info("%d image(s): %d to predict, %d mattes exist already", len(pairs), len(todo), len(pairs) - len(todo))
    failure = None
    if todo:
        connected = connect_ray(address, [jobs, model_package, data_prep, formats])
        try:
            gpus, actors, actor_device = actor_resources(device, ray.cluster_resources().get("GPU", 0), actors)
            items = [{"image": str(img), "guide": str(g), "matte": str(m)} for img, g, m in todo]
            blocks = -(-len(items) // batch_size)
            ds = ray.data.from_items(items, override_num_blocks=blocks).map_batches(
                MattePredictor, batch_size=batch_size, batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=min(actors, blocks)), num_cpus=1, num_gpus=gpus,
                fn_constructor_kwargs={"model": model, "tracking_uri": mlflow.get_tracking_uri(),
                                       "device": actor_device, "from_mask": mask is not None,
                                       "band": band or BandRadius(),
                                       "options": options or InferenceOptions(), "driver_cwd": os.getcwd()})
            for row in ds.iter_rows():
                rows[str(row["image"])].update(status=str(row["status"]), error=str(row["error"]),
                                               seconds=float(row["seconds"]), worker=str(row["worker"]))
        except JobError:  # the request does not fit the cluster (actor_resources): nothing was started
            raise
        except Exception as exc:  # noqa: BLE001 - a lost actor or cluster: the CSV still says what was done
            failure = exc
            why = f"{NOT_PROCESSED}: {type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''}"
            for r in rows.values():
                if r["error"] == NOT_PROCESSED:
                    r["error"] = why
        finally:
            if connected:
                ray.shutdown()
    result = BatchPredictResult(csv_path, list(rows.values()), time.time() - t0)
    _write_csv(csv_path, result.rows)
    if failure is not None:
        raise JobError(f"Ray batch prediction stopped: {failure}; what was done is listed in {csv_path}") from failure
    return result
