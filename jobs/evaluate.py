"""`evaluate`: official metrics and region errors per image on test shards or a Composition-1k Test_set folder, CSV +
means (overall and per category), logged to MLflow; `--set-alias` moves the alias only when this model beats the
current holder on the same data with the same inference options, and never after an image failed.

Categories: an image key `<category>__<name>` (a double underscore; in a folder, the composite `merged/<category>__
<fg>_<i>.png` with its alpha `alpha/<category>__<fg>.png`) belongs to `<category>`; keys without one are
`uncategorised`. Per-category means are reported when any key has a category (AIM-500 / SIMD style sets).

Failures: an image that cannot be scored (unreadable file, sizes that differ, a bad trimap) becomes a CSV row with
its key and the error, the rest are scored, and the command then exits non-zero; means cover the scored images."""
from __future__ import annotations

import csv
import hashlib
import json
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from tqdm import tqdm

from formats.manifest import MANIFEST, ManifestError, read_manifest
from jobs.errors import JobError
from jobs.images import check_trimap, read_gray, read_rgb
from jobs.inference_options import InferenceOptions

log = logging.getLogger(__name__)

METRICS = ("SAD", "MSE", "Grad", "Conn")
REGION_METRICS = ("MAD", "MAD_all", "SAD_fg", "SAD_bg", "SAD_unknown", "SAD_all")
ALL_METRICS = METRICS + REGION_METRICS
CSV_FIELDS = ("key", *ALL_METRICS, "category", "error")
EVAL_EXPERIMENT = "a2u-evaluation"
CATEGORY_SEPARATOR = "__"
UNCATEGORISED = "uncategorised"


@dataclass
class EvalSample:
    key: str
    image: np.ndarray   # H×W×3 uint8
    trimap: np.ndarray  # H×W uint8 0/128/255
    alpha: np.ndarray   # H×W uint8


@dataclass
class EvalFailure:
    """An image that could not be scored: its key and why (becomes an error row of the CSV)."""
    key: str
    error: str


def category_of(key: str) -> str:
    """`<category>__<name>` -> category; keys without the separator are uncategorised."""
    head, sep, _ = key.partition(CATEGORY_SEPARATOR)
    return head if sep and head else UNCATEGORISED


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


def _read_folder_sample(stem: str, merged: Path, alpha_path: Path, trimap_path: Path) -> EvalSample:
    image, alpha = read_rgb(merged), read_gray(alpha_path)
    trimap = check_trimap(read_gray(trimap_path), trimap_path)
    if not (image.shape[:2] == alpha.shape == trimap.shape):
        raise JobError(f"{merged}: image {image.shape[:2]}, alpha {alpha.shape} and trimap {trimap.shape} differ "
                       "in size")
    return EvalSample(stem, image, trimap, alpha)


def iter_folder(files: list[tuple[str, Path, Path, Path | None]]) -> Iterator[EvalSample | EvalFailure]:
    """Each composite of a Test_set folder (`_folder_files`), or an EvalFailure naming why it cannot be read."""
    for stem, merged, alpha_path, trimap_path in files:
        try:
            yield _read_folder_sample(stem, merged, alpha_path, trimap_path)  # type: ignore[arg-type]
        except JobError as exc:
            yield EvalFailure(stem, str(exc))


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


def open_dataset(data: str) -> tuple[Iterator[EvalSample | EvalFailure], int | None, str]:
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
        files = _folder_files(root)
        merged = [m for _, m, _, _ in files]
        digest = hashlib.sha256("|".join(f"{p.name}:{p.stat().st_size}" for p in merged).encode()).hexdigest()
        return iter_folder(files), len(merged), f"folder:{digest[:16]}"
    raise JobError(f"{data} is neither a shard directory (manifest.json) nor a Test_set folder (merged/ alpha/ trimaps/)")


def _score_one(net, s: EvalSample, options: InferenceOptions) -> dict:
    from model.metrics import evaluate_all

    pred = options.predict(net, s.image, s.trimap)
    m = evaluate_all(pred, s.alpha, s.trimap)
    return {"key": s.key, **{k: float(m[k]) for k in ALL_METRICS}, "category": category_of(s.key), "error": ""}


def failed_rows(rows: list[dict]) -> list[dict]:
    """The error rows among `rows`."""
    return [r for r in rows if r.get("error")]


def mean_scores(rows: list[dict]) -> dict[str, float]:
    """Means of every metric over the scored (not failed) rows."""
    ok = [r for r in rows if not r.get("error")]
    return {k: float(np.mean([r[k] for r in ok])) for k in ALL_METRICS} if ok else {}


def category_means(rows: list[dict]) -> dict[str, dict[str, float]]:
    """category -> {"images": n, metric: mean, ...} over scored rows; empty when no key has a category."""
    ok = [r for r in rows if not r.get("error")]
    if all(r["category"] == UNCATEGORISED for r in ok):
        return {}
    out = {}
    for cat in sorted({r["category"] for r in ok}):
        members = [r for r in ok if r["category"] == cat]
        out[cat] = {"images": float(len(members)), **mean_scores(members)}
    return out


def _write_csv(path: Path, fields: tuple[str, ...] | list[str], rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(fields))
        w.writeheader()
        w.writerows(rows)


def score(net, data: str, csv_path: Path | None = None, desc: str = "evaluate",
          options: InferenceOptions | None = None,
          dataset: tuple[Iterator[EvalSample | EvalFailure], int | None, str] | None = None,
          ) -> tuple[dict[str, float], list[dict], str]:
    """Per-image metrics (and the CSV, plus per_category.csv beside it when the keys have categories) for `net` on
    `data`; returns (means over the scored images, rows including error rows, fingerprint). An image that fails is
    an error row, never a reason to stop scoring the others. `dataset`: `open_dataset(data)` when the caller has
    opened (and so verified) it already."""
    options = options or InferenceOptions()
    samples, total, fingerprint = dataset or open_dataset(data)
    rows: list[dict] = []
    for s in tqdm(samples, total=total, desc=desc, unit="img"):
        if isinstance(s, EvalSample):
            try:
                rows.append(_score_one(net, s, options))
                continue
            except ValueError as exc:  # inference or metric input checks: this image, not the whole set
                s = EvalFailure(s.key, str(exc))
        log.error("cannot score %s: %s", s.key, s.error)
        rows.append({"key": s.key, **dict.fromkeys(ALL_METRICS, ""), "category": category_of(s.key),
                     "error": s.error})
    if not rows:
        raise JobError(f"{data}: no evaluation samples")
    if csv_path is not None:
        _write_csv(csv_path, CSV_FIELDS, rows)
        per_category = category_means(rows)
        if per_category:
            _write_csv(csv_path.with_name("per_category.csv"), ("category", "images", *ALL_METRICS),
                       [{"category": c, **m} for c, m in per_category.items()])
    means = mean_scores(rows)
    if not means:
        where = f" (errors in {csv_path})" if csv_path else ""
        raise JobError(f"{data}: none of the {len(rows)} images could be scored{where}; first: {rows[0]['error']}")
    return means, rows, fingerprint


def trimap_only_score(data: str) -> dict[str, float]:
    """The floor a learned model must beat: 0.5 (128) in the unknown region, trimap elsewhere."""
    from model.metrics import evaluate as metric_fn

    samples, _, _ = open_dataset(data)
    rows = []
    for s in samples:
        if isinstance(s, EvalFailure):
            raise JobError(f"{s.key}: {s.error}")
        rows.append(metric_fn(np.where(s.trimap == 128, 128, s.trimap).astype(np.uint8), s.alpha, s.trimap))
    return {k: float(np.mean([r[k] for r in rows])) for k in METRICS}


def _prior_score(client, experiment_id: str, name: str, version: str, fingerprint: str,
                 options: InferenceOptions) -> float | None:
    """SAD of the latest complete evaluation of `name` v`version` on the same data with the same inference options
    (runs with failed images carry no data fingerprint tag, so they are never found here)."""
    runs = client.search_runs([experiment_id], filter_string=(
        f"tags.`a2u.model_name` = '{name}' and tags.`a2u.model_version` = '{version}' and "
        f"tags.`a2u.data_fingerprint` = '{fingerprint}' and tags.`a2u.inference` = '{options.tag()}'"),
        max_results=1, order_by=["attributes.start_time DESC"])
    return runs[0].data.metrics.get("test/SAD") if runs else None


def _metric_key(category: str) -> str:
    """An MLflow-safe metric name part for a category (letters, digits, _ - . and spaces are allowed)."""
    return re.sub(r"[^A-Za-z0-9_\-. ]", "_", category)


def run_evaluate(model: str, data: str, out_dir: str | None = None, set_alias: str | None = None,
                 device: str = "auto", tracking_uri: str | None = None, *,
                 options: InferenceOptions | None = None) -> dict:
    """Score `model` on `data`, log an evaluation run, maybe move `set_alias`. Returns a summary dict whose
    "failed" lists the error rows (non-empty: the alias is not moved and the run is marked FAILED)."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from jobs.model_uri import is_mlflow_uri, load_net, pick_device, resolve_registered
    from jobs.tracking import ensure_experiment, use_tracking_uri

    uri = use_tracking_uri(tracking_uri, must_exist=is_mlflow_uri(model), reachable=True)
    ref = resolve_registered(model) if model.startswith("models:/") else None
    if set_alias and ref is None:
        raise JobError(f"--set-alias needs a registered model (models:/name@alias or models:/name/<version>), "
                       f"got {model}")
    dataset = open_dataset(data)  # fail on bad data before loading the model (the samples are read lazily)
    dev = pick_device(device)
    net = load_net(model, dev)
    options = options or InferenceOptions()
    out = Path(out_dir or Path("runs") / "eval" / time.strftime("%Y%m%d-%H%M%S")).resolve()
    csv_path = out / "per_image.csv"
    t0 = time.time()
    means, rows, fingerprint = score(net, data, csv_path, options=options, dataset=dataset)
    seconds = time.time() - t0
    failed = failed_rows(rows)
    per_category = category_means(rows)

    client = MlflowClient(uri, uri)
    exp_id = ensure_experiment(uri, EVAL_EXPERIMENT)
    tags = {"a2u.model_uri": model, "a2u.data": str(Path(data).resolve()), "a2u.inference": options.tag()}
    # a partial score must never stand in for the model's score on this data: no fingerprint tag when images failed
    tags |= {"a2u.failed_images": str(len(failed))} if failed else {"a2u.data_fingerprint": fingerprint}
    if ref:
        tags |= {"a2u.model_name": ref.name, "a2u.model_version": ref.version}
    with mlflow.start_run(experiment_id=exp_id, run_name=f"eval-{ref.name + ' v' + ref.version if ref else 'model'}",
                          tags=tags) as run:
        mlflow.log_params({"tta": options.tta, "pad": options.pad, "max_pixels": options.pixels()})
        metrics = {f"test/{k}": v for k, v in means.items()}
        for cat, m in per_category.items():
            metrics |= {f"test/{_metric_key(cat)}/{k}": v for k, v in m.items()}
        mlflow.log_metrics(metrics | {"test/images": len(rows) - len(failed), "test/failed_images": len(failed),
                                      "test/seconds": seconds})
        mlflow.log_artifact(str(csv_path), "evaluation")
        if per_category:
            mlflow.log_artifact(str(csv_path.with_name("per_category.csv")), "evaluation")
    if failed:
        client.set_terminated(run.info.run_id, status="FAILED")
    summary = {"model": model, "data": data, "means": means, "images": len(rows) - len(failed), "csv": str(csv_path),
               "eval_run_id": run.info.run_id, "alias": None, "seconds": seconds, "failed": failed,
               "categories": per_category}
    if ref is not None and not failed:
        client.set_model_version_tag(ref.name, ref.version, f"test_SAD.{fingerprint}", f"{means['SAD']:.6f}")
    if set_alias and ref is not None:
        if failed:
            summary["alias"] = f"{set_alias} not moved: {len(failed)} image(s) could not be scored"
        else:
            summary["alias"] = _maybe_move_alias(client, exp_id, ref, set_alias, means["SAD"], data, fingerprint,
                                                 dev, options)
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


def _maybe_move_alias(client, exp_id: str, ref, alias: str, sad: float, data: str, fingerprint: str, dev,
                      options: InferenceOptions) -> str:
    from jobs.model_uri import load_net

    holder = alias_holder(client, ref.name, alias)
    if holder == ref.version:
        return f"{alias} already on version {ref.version}"
    if holder is not None:
        holder_sad = _prior_score(client, exp_id, ref.name, holder, fingerprint, options)
        if holder_sad is None:  # never scored on this data: score it now, same data, same code, same options
            log.info("scoring the current %s (version %s) on the same data", alias, holder)
            holder_means, holder_rows, _ = score(load_net(f"models:/{ref.name}/{holder}", dev), data, None,
                                                 desc=f"evaluate {alias} v{holder}", options=options)
            if failed_rows(holder_rows):
                return f"{alias} stays on version {holder}: scoring it again failed on some images"
            holder_sad = holder_means["SAD"]
        if not sad < holder_sad:
            return (f"{alias} stays on version {holder} (SAD {holder_sad:.4f} <= {sad:.4f} of version "
                    f"{ref.version})")
    client.set_registered_model_alias(ref.name, alias, ref.version)
    was = f"from version {holder}" if holder else "(new)"
    return f"{alias} -> version {ref.version} {was}"
