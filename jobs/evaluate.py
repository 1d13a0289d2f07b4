"""`evaluate`: official metrics per image on test shards or a Composition-1k Test_set folder, CSV + means, logged
to MLflow; `--set-alias` moves the alias only when this model beats the current holder on the same data."""
from __future__ import annotations

import csv
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from tqdm import tqdm

from formats.manifest import MANIFEST, ManifestError, read_manifest
from jobs.errors import JobError
from jobs.images import check_trimap, read_gray, read_rgb

log = logging.getLogger(__name__)

METRICS = ("SAD", "MSE", "Grad", "Conn")
EVAL_EXPERIMENT = "a2u-evaluation"


@dataclass
class EvalSample:
    key: str
    image: np.ndarray   # H×W×3 uint8
    trimap: np.ndarray  # H×W uint8 0/128/255
    alpha: np.ndarray   # H×W uint8


def _folder_files(root: Path) -> list[tuple[str, Path, Path, Path | None]]:
    """The Test_set layout's (stem, merged, alpha, trimap) via data_prep's reader of that layout; bad files fail."""
    from data_prep.plans import composition1k_test_files
    from data_prep.sources import InputError

    bad: list = []
    try:
        files = composition1k_test_files(root, bad)
    except InputError as exc:
        raise JobError(str(exc)) from exc
    if bad:
        raise JobError(f"{root}: {bad[0]}" + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""))
    if not files:
        raise JobError(f"{root}: merged/ holds no images")
    missing = [str(m) for _, m, _, t in files if t is None]
    if missing:
        raise JobError(f"{missing[0]}: no matching trimap file (trimaps/<name>.png or trimaps/<fg>.png)")
    return files


def iter_folder(root: Path) -> Iterator[EvalSample]:
    for stem, merged, alpha_path, trimap_path in _folder_files(root):
        image, alpha = read_rgb(merged), read_gray(alpha_path)
        trimap = check_trimap(read_gray(trimap_path), trimap_path)  # type: ignore[arg-type]
        if not (image.shape[:2] == alpha.shape == trimap.shape):
            raise JobError(f"{merged}: image {image.shape[:2]}, alpha {alpha.shape} and trimap {trimap.shape} differ "
                           "in size")
        yield EvalSample(stem, image, trimap, alpha)


def iter_shards(root: Path) -> Iterator[EvalSample]:
    import pipeline

    try:
        for s in pipeline.build_eval_loader(str(root), split="test", as_uint8=True):
            yield EvalSample(str(s["key"]), s["image"], s["trimap"], s["alpha"])
    except pipeline.DatasetError as exc:
        raise JobError(str(exc)) from exc


def check_test_shards(root: Path, manifest) -> None:
    """Refuse test shards that fail data_prep's verification (size, sha256, members, DALI index) before any score is
    computed or logged: a damaged shard would give a score for data nobody prepared."""
    from data_prep.verify import verify_shard

    problems = [p for entry in manifest.shards_of("test") for p in verify_shard((str(root), entry, manifest.encoding))]
    if problems:
        listed = "; ".join(f"{f}: {why}" for f, why in problems[:5])
        raise JobError(f"{len(problems)} problem(s) in the test shards of {root}: {listed} "
                       f"(`python -m data_prep verify {root}` lists them; re-run data_prep to rewrite the shards)")


def open_dataset(data: str) -> tuple[Iterator[EvalSample], int | None, str]:
    """(samples, count or None, fingerprint of the data so scores are only compared on the same set)."""
    root = Path(data).expanduser()
    if not root.is_dir():
        raise JobError(f"evaluation data {data} does not exist (a shard directory with test-* shards, or a "
                       "Composition-1k Test_set folder with merged/ alpha/ trimaps/)")
    if (root / MANIFEST).is_file():
        try:
            manifest = read_manifest(root)
        except ManifestError as exc:
            raise JobError(str(exc)) from exc
        shards = manifest.shards_of("test")
        if not shards:
            raise JobError(f"{manifest.path} lists no test-* shards; write them with data_prep (synthetic always does)")
        check_test_shards(root, manifest)
        digest = hashlib.sha256(json.dumps(sorted(s.get("sha256", s["name"]) for s in shards)).encode()).hexdigest()
        return iter_shards(root), sum(int(s.get("samples", 0)) for s in shards) or None, f"shards:{digest[:16]}"
    from data_prep.plans import is_composition1k_test_set

    if is_composition1k_test_set(root):
        merged = [m for _, m, _, _ in _folder_files(root)]
        digest = hashlib.sha256("|".join(f"{p.name}:{p.stat().st_size}" for p in merged).encode()).hexdigest()
        return iter_folder(root), len(merged), f"folder:{digest[:16]}"
    raise JobError(f"{data} is neither a shard directory (manifest.json) nor a Test_set folder (merged/ alpha/ trimaps/)")


def score(net, data: str, csv_path: Path | None = None, desc: str = "evaluate") -> tuple[dict[str, float], list[dict], str]:
    """Per-image metrics (and the CSV) for `net` on `data`; returns (means, rows, fingerprint)."""
    from model.inference import predict_alpha
    from model.metrics import evaluate as metric_fn

    samples, total, fingerprint = open_dataset(data)
    rows: list[dict] = []
    for s in tqdm(samples, total=total, desc=desc, unit="img"):
        pred = predict_alpha(net, s.image, s.trimap)
        m = metric_fn(pred, s.alpha, s.trimap)
        rows.append({"key": s.key, **{k: float(m[k]) for k in METRICS}})
    if not rows:
        raise JobError(f"{data}: no evaluation samples")
    means = {k: float(np.mean([r[k] for r in rows])) for k in METRICS}
    if csv_path is not None:
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        with open(csv_path, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=["key", *METRICS])
            w.writeheader()
            w.writerows(rows)
    return means, rows, fingerprint


def trimap_only_score(data: str) -> dict[str, float]:
    """The floor a learned model must beat: 0.5 (128) in the unknown region, trimap elsewhere."""
    from model.metrics import evaluate as metric_fn

    samples, _, _ = open_dataset(data)
    rows = [metric_fn(np.where(s.trimap == 128, 128, s.trimap).astype(np.uint8), s.alpha, s.trimap) for s in samples]
    return {k: float(np.mean([r[k] for r in rows])) for k in METRICS}


def _prior_score(client, experiment_id: str, name: str, version: str, fingerprint: str) -> float | None:
    runs = client.search_runs([experiment_id], filter_string=(
        f"tags.`a2u.model_name` = '{name}' and tags.`a2u.model_version` = '{version}' and "
        f"tags.`a2u.data_fingerprint` = '{fingerprint}'"), max_results=1, order_by=["attributes.start_time DESC"])
    return runs[0].data.metrics.get("test/SAD") if runs else None


def run_evaluate(model: str, data: str, out_dir: str | None = None, set_alias: str | None = None,
                 device: str = "auto", tracking_uri: str | None = None) -> dict:
    """Score `model` on `data`, log an evaluation run, maybe move `set_alias`. Returns a summary dict."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from jobs.model_uri import is_mlflow_uri, load_net, pick_device, resolve_registered
    from jobs.tracking import check_tracking_reachable, ensure_experiment, use_tracking_uri

    uri = use_tracking_uri(tracking_uri, must_exist=is_mlflow_uri(model))
    check_tracking_reachable(uri)
    ref = resolve_registered(model) if model.startswith("models:/") else None
    if set_alias and ref is None:
        raise JobError(f"--set-alias needs a registered model (models:/name@alias or models:/name/<version>), "
                       f"got {model}")
    open_dataset(data)  # fail on bad data before loading the model
    dev = pick_device(device)
    net = load_net(model, dev)
    out = Path(out_dir or Path("runs") / "eval" / time.strftime("%Y%m%d-%H%M%S")).resolve()
    csv_path = out / "per_image.csv"
    t0 = time.time()
    means, rows, fingerprint = score(net, data, csv_path)
    seconds = time.time() - t0

    client = MlflowClient(uri, uri)
    exp_id = ensure_experiment(uri, EVAL_EXPERIMENT)
    tags = {"a2u.model_uri": model, "a2u.data": str(Path(data).resolve()), "a2u.data_fingerprint": fingerprint}
    if ref:
        tags |= {"a2u.model_name": ref.name, "a2u.model_version": ref.version}
    with mlflow.start_run(experiment_id=exp_id, run_name=f"eval-{ref.name + ' v' + ref.version if ref else 'model'}",
                          tags=tags) as run:
        mlflow.log_metrics({f"test/{k}": v for k, v in means.items()} | {"test/images": len(rows),
                                                                        "test/seconds": seconds})
        mlflow.log_artifact(str(csv_path), "evaluation")
    summary = {"model": model, "data": data, "means": means, "images": len(rows), "csv": str(csv_path),
               "eval_run_id": run.info.run_id, "alias": None, "seconds": seconds}
    if ref is not None:
        client.set_model_version_tag(ref.name, ref.version, f"test_SAD.{fingerprint}", f"{means['SAD']:.6f}")
    if set_alias and ref is not None:
        summary["alias"] = _maybe_move_alias(client, exp_id, ref, set_alias, means["SAD"], data, fingerprint, dev)
    return summary


def alias_holder(client, name: str, alias: str) -> str | None:
    """The version `alias` points at, or None when the registry says the alias does not exist. Any other registry
    error (authentication, network, server) is raised: only a missing alias may move an alias."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        missing = exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE") and \
            f"alias {alias} not found" in str(exc).lower().replace("'", "")
        if missing:
            return None
        raise


def _maybe_move_alias(client, exp_id: str, ref, alias: str, sad: float, data: str, fingerprint: str, dev) -> str:
    from jobs.model_uri import load_net

    holder = alias_holder(client, ref.name, alias)
    if holder == ref.version:
        return f"{alias} already on version {ref.version}"
    if holder is not None:
        holder_sad = _prior_score(client, exp_id, ref.name, holder, fingerprint)
        if holder_sad is None:  # never scored on this data: score it now, same data, same code
            log.info("scoring the current %s (version %s) on the same data", alias, holder)
            holder_sad = score(load_net(f"models:/{ref.name}/{holder}", dev), data, None,
                               desc=f"evaluate {alias} v{holder}")[0]["SAD"]
        if not sad < holder_sad:
            return (f"{alias} stays on version {holder} (SAD {holder_sad:.4f} <= {sad:.4f} of version "
                    f"{ref.version})")
    client.set_registered_model_alias(ref.name, alias, ref.version)
    was = f"from version {holder}" if holder else "(new)"
    return f"{alias} -> version {ref.version} {was}"
