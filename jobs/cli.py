"""`python -m jobs <command>`: train, evaluate, predict, submit, demo, export."""
from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings

from data_prep.cli import int_at_least
from jobs.errors import JobError
from jobs.inference_options import InferenceOptions

TRACKING_HELP = "MLflow tracking URI (default $MLFLOW_TRACKING_URI, else sqlite:///runs/mlflow.db, the embedded store)"


def _train(args: argparse.Namespace) -> int:
    from jobs.config import load_config
    from jobs.trainer import run_training

    cfg = load_config(args.config, args.overrides)
    if args.print_config:
        from jobs.config import to_yaml

        print(to_yaml(cfg), end="")
        return 0
    out = run_training(cfg)
    print(f"trained {out.run_name}: {out.step} steps in {out.seconds:.0f} s"
          + (f", median {out.images_per_second:.2f} images/s" if out.images_per_second else "")
          + (f"; stopped early by optim.max_train_minutes={cfg.optim.max_train_minutes} (continue it with "
             f"run.name={out.run_name} run.storage_path={cfg.run.storage_path})" if out.stopped_by_time_budget else ""))
    print(f"  MLflow run {out.mlflow_run_id} at {out.tracking_uri}")
    print(f"  checkpoint {out.checkpoint_path}")
    if out.model_version:
        print(f"  registered {cfg.tracking.registered_model_name} version {out.model_version} ({out.model_uri})")
    return 0


def _use_tracking(args: argparse.Namespace) -> None:
    """predict / export (evaluate does the same itself): the one tracking URI (--tracking-uri, else
    $MLFLOW_TRACKING_URI, else the embedded default store); a registry URI needs the store to exist."""
    from jobs.model_uri import is_mlflow_uri
    from jobs.tracking import use_tracking_uri

    use_tracking_uri(args.tracking_uri, must_exist=is_mlflow_uri(args.model))


def _evaluate(args: argparse.Namespace) -> int:
    from jobs.evaluate import METRICS, run_evaluate

    options = _inference_options(args)
    s = run_evaluate(args.model, args.data, args.out, args.set_alias, args.device, args.tracking_uri,
                     options=options)
    means = "  ".join(f"{k} {v:.4f}" for k, v in s["means"].items())
    print(f"{s['model']} on {s['images']} images of {s['data']} ({options.tag()}): {means}")
    for cat, m in s["categories"].items():
        print(f"  {cat} ({m['images']:.0f} images): " + "  ".join(f"{k} {m[k]:.4f}" for k in (*METRICS, "MAD")))
    print(f"  per-image CSV {s['csv']}; MLflow evaluation run {s['eval_run_id']}")
    if s["alias"]:
        print(f"  alias: {s['alias']}")
    for row in s["failed"]:
        print(f"error: {row['key']}: {row['error']}", file=sys.stderr)
    if s["failed"]:
        print(f"error: {len(s['failed'])} image(s) could not be scored (error rows in {s['csv']})", file=sys.stderr)
        return 1
    return 0


def _predict(args: argparse.Namespace) -> int:
    from data_prep.trimaps import BandRadius
    from jobs.predict import run_predict
    from jobs.predict_s3 import any_remote, run_predict_s3

    _use_tracking(args)
    band = BandRadius(radius=args.mask_radius, fraction=args.mask_radius_fraction)
    remote = any_remote(args.image, args.trimap, args.mask, args.out)
    if args.ray is not None:
        if remote:
            raise JobError("--ray reads and writes local folders only; drop --ray to predict with s3:// locations")
        return _predict_on_ray(args, band)
    if args.actors is not None or args.batch_size is not None:
        raise JobError("--actors and --batch-size are options of --ray")
    if remote:
        uris = run_predict_s3(args.model, args.image, args.trimap, args.out, args.device, args.overwrite,
                              mask=args.mask, band=band, options=_inference_options(args))
        print(f"wrote {len(uris)} alpha matte(s): {uris[0] if len(uris) == 1 else uris[0].rsplit('/', 1)[0]}")
        return 0
    written = run_predict(args.model, args.image, args.trimap, args.out, args.device, args.overwrite,
                          mask=args.mask, band=band, options=_inference_options(args))
    print(f"wrote {len(written)} alpha matte(s): {written[0] if len(written) == 1 else written[0].parent}")
    return 0


def _predict_on_ray(args: argparse.Namespace, band) -> int:
    from jobs.batch_predict import run_batch_predict

    r = run_batch_predict(args.model, args.image, args.trimap, args.out, address=args.ray or None,
                          actors=args.actors or 1, batch_size=args.batch_size or 2, device=args.device,
                          overwrite=args.overwrite, mask=args.mask, band=band,
                          options=_inference_options(args))
    done = r.count("written")
    print(f"{done} matte(s) written, {r.count('skipped')} skipped (exist), {r.count('failed')} failed in "
          f"{r.seconds:.1f} s; every image in {r.csv_path}")
    failed = [row for row in r.rows if row["status"] == "failed"]
    for row in failed:
        print(f"error: {row['error']}", file=sys.stderr)
    if failed:
        print(f"error: {len(failed)} image(s) failed (listed in {r.csv_path})", file=sys.stderr)
        return 1
    return 0


def _submit(args: argparse.Namespace) -> int:
    from jobs.submit import submit

    sid, status = submit(args.config, args.overrides, args.address, args.follow, args.job_id)
    if status is None:
        return 0
    print(f"job {sid}: {status}")
    return 0 if status == "SUCCEEDED" else 1


def _demo(args: argparse.Namespace) -> int:
    from jobs.demo import run_demo

    return run_demo(args.workdir, fresh=args.fresh)


def _export(args: argparse.Namespace) -> int:
    from jobs.export import export_model

    _use_tracking(args)
    r = export_model(args.model, args.format, args.out, log_to_run=not args.no_log)
    errors = ", ".join(f"{k}: {v:.2g}" for k, v in r.max_abs_error.items())
    print(f"exported {args.model} as {r.format} to {r.path} in {r.seconds:.0f} s; max abs error vs PyTorch {errors}")
    if r.artifact_uri:
        print(f"  logged to MLflow run {r.run_id} as {r.artifact_uri}")
    return 0


def _add_export_parser(sub) -> None:
    x = sub.add_parser("export", help="ONNX or TorchScript file (dynamic batch/H/W), checked against PyTorch")
    x.add_argument("--model", required=True, help="models:/name@alias, models:/name/<version>, runs:/..., checkpoint")
    x.add_argument("--tracking-uri", default=None, help=TRACKING_HELP)
    x.add_argument("--format", required=True, choices=("onnx", "torchscript"))
    x.add_argument("--out", required=True, help="output file, e.g. a2u.onnx or a2u.pt")
    x.add_argument("--no-log", action="store_true", help="do not log the file as an artifact of the model's run")
    x.set_defaults(func=_export)
# --- end export -----------------------------------------------------------------------------------------------


_positive_int = int_at_least(1, "_positive_int")
_non_negative_int = int_at_least(0, "_non_negative_int")


def _positive_float(text: str) -> float:
    value = float(text)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _add_inference_options(p: argparse.ArgumentParser) -> None:
    """--tta, --pad, --max-pixels: model/inference.py's options, the same for predict and evaluate."""
    from model.inference import DEFAULT_MAX_PIXELS, PAD_MODES, TTA_MODES

    p.add_argument("--tta", choices=TTA_MODES, default="none",
                   help="test-time augmentation: none; flip = average with the horizontal mirror (2x time); d4 = "
                        "average over the 8 flips x 90-degree rotations (8x time)")
    p.add_argument("--pad", choices=PAD_MODES, default="reflect",
                   help="padding to the net's multiple of 16: reflect (mirror the image, the official recipe; "
                        "default) or zero (zeros in the net input: mean colour, trimap background)")
    p.add_argument("--max-pixels", type=_positive_int, default=DEFAULT_MAX_PIXELS,
                   help=f"padded images above this many pixels run in overlapping tiles (default {DEFAULT_MAX_PIXELS}"
                        "; lower it when memory runs out)")


def _inference_options(args: argparse.Namespace) -> InferenceOptions:
    """The parsed --tta/--pad/--max-pixels as the one value every predict and evaluate path takes."""
    return InferenceOptions(tta=args.tta, pad=args.pad, max_pixels=args.max_pixels)


def build_parser() -> argparse.ArgumentParser:
    from data_prep.trimaps import DEFAULT_FRACTION

    p = argparse.ArgumentParser(prog="python -m jobs", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="Ray Train DDP training with MLflow tracking and model registration")
    t.add_argument("--config", required=True, help="YAML file, e.g. jobs/configs/a2u_comp1k.yaml")
    t.add_argument("overrides", nargs="*", help="section.key=value (YAML-typed), e.g. optim.epochs=2")
    t.add_argument("--print-config", action="store_true",
                   help="print the resolved configuration (defaults, file, overrides; all checked) and exit")
    t.set_defaults(func=_train)

    e = sub.add_parser(
        "evaluate", help="official metrics and region errors on test shards or a Composition-1k Test_set folder",
        description="Per image: SAD, MSE, Grad, Conn (official Composition-1k units), MAD over the unknown region "
                    "and the whole image, SAD per trimap region (fg / bg / unknown) and over the whole image, "
                    "written to <out>/per_image.csv and logged to MLflow. Categories: an image named "
                    "<category>__<name> (merged/<category>__<fg>_<i>.png with alpha/<category>__<fg>.png) belongs "
                    "to <category>; per-category means go to <out>/per_category.csv. An image that cannot be "
                    "scored becomes an error row (key, error); the others are scored, the command exits 1 and "
                    "no alias moves.")
    e.add_argument("--tracking-uri", default=None, help=TRACKING_HELP)
    e.add_argument("--model", required=True, help="models:/name@alias, models:/name/<version>, runs:/<id>/model "
                                                  "or a checkpoint path")
    e.add_argument("--data", required=True, help="shard directory with test-* shards, or Test_set with merged/ "
                                                 "alpha/ trimaps/")
    e.add_argument("--out", default=None, help="folder for per_image.csv (default runs/eval/<time>)")
    e.add_argument("--set-alias", default=None, help="move this alias to the model if it beats the current holder")
    e.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    _add_inference_options(e)
    e.set_defaults(func=_evaluate)

    r = sub.add_parser("predict", help="alpha mattes for an image (or a folder) and its trimap(s) or mask(s)")
    r.add_argument("--model", required=True, help="models:/name@alias, models:/name/<version>, runs:/..., checkpoint")
    r.add_argument("--tracking-uri", default=None, help=TRACKING_HELP)
    r.add_argument("--image", required=True, help="image file or folder")
    second = r.add_mutually_exclusive_group(required=True)
    second.add_argument("--trimap", default=None, help="trimap file or folder of same-named trimaps (0/128/255)")
    second.add_argument("--mask", default=None,
                        help="coarse binary mask file or folder of same-named masks: the trimap is made from it "
                             "(unknown band on the mask boundary; `python -m data_prep trimap --help` explains it)")
    band = r.add_mutually_exclusive_group()
    band.add_argument("--mask-radius", type=_non_negative_int, default=None, help="with --mask: band radius in pixels")
    band.add_argument("--mask-radius-fraction", type=_positive_float, default=DEFAULT_FRACTION,
                      help=f"with --mask: radius = max(3, round(F * sqrt(mask area))) (default {DEFAULT_FRACTION})")
    r.add_argument("--out", required=True, help="output PNG (file mode) or folder (folder mode)")
    r.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    r.add_argument("--overwrite", action="store_true", help="replace mattes that exist already (never an input)")
    _add_inference_options(r)
    ray = r.add_argument_group("on a Ray cluster (Ray Data; inputs, --out and a local MLflow store on a filesystem "
                               "every node sees at the same paths)")
    ray.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                     help="predict with a pool of Ray actors: ADDRESS as ray.init takes it (auto, host:port); bare "
                          "--ray attaches to $RAY_ADDRESS or this machine's running cluster, else starts a local one. "
                          "Existing mattes are skipped (--overwrite recomputes them); <out>/predictions.csv lists "
                          "every image as written, skipped or failed, and any failure exits 1")
    ray.add_argument("--actors", type=_positive_int, default=None,
                     help="with --ray: actors, each loading the model once and taking one CPU (default 1)")
    ray.add_argument("--batch-size", type=_positive_int, default=None,
                     help="with --ray: images per actor call (default 2)")
    r.set_defaults(func=_predict)

    s = sub.add_parser("submit", help="submit `train` to a Ray cluster (Job Submission API)")
    s.add_argument("--config", required=True)
    s.add_argument("--address", default=None, help=f"Ray dashboard/job server (default $RAY_API_SERVER_ADDRESS, "
                                                   f"$RAY_ADDRESS if http, else http://127.0.0.1:8265)")
    s.add_argument("--follow", action="store_true", help="stream the job's logs; exit 1 unless it succeeds")
    s.add_argument("--job-id", default=None, help="submission id (default: Ray picks one)")
    s.add_argument("overrides", nargs="*", help="section.key=value")
    s.set_defaults(func=_submit)

    d = sub.add_parser("demo", help="synthetic data -> 2-worker training -> evaluate + champion -> predict (CPU)")
    d.add_argument("--workdir", default="runs/demo", help="where data, Ray results, MLflow and outputs go")
    d.add_argument("--fresh", action="store_true", help="delete an earlier demo in --workdir first")
    d.set_defaults(func=_demo)
    _add_export_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("alembic", "mlflow.store.db.utils", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*local version label.*")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")  # an unreachable server fails in seconds
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")
    try:
        return args.func(args)
    except JobError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print(f"interrupted: {exc}" if str(exc) else "interrupted", file=sys.stderr)
        return 130
