"""Official metrics (model/metrics.py) of a model on a Composition-1k-layout folder or a shard directory, with the
trimap-only floor beside it, as a markdown table: the one command behind every quality figure in RESULTS.md.

    .venv/bin/python benchmarks/bench_quality.py models:/a2u-matting@champion datasets/real-dev
    .venv/bin/python benchmarks/bench_quality.py runs/demo/ray/<run>/checkpoint_step00000250 runs/demo/data --per-image

MODEL_URI: `models:/name@alias`, `models:/name/version`, `runs:/<id>/model` (MLflow at $MLFLOW_TRACKING_URI) or a
checkpoint path. The data are read by the same reader `python -m jobs evaluate` uses, so the numbers are comparable.
"""
from __future__ import annotations

import argparse
import logging
import platform
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from jobs.evaluate import METRICS, score, trimap_only_score  # noqa: E402
from jobs.model_uri import load_net, pick_device  # noqa: E402

log = logging.getLogger("bench_quality")


def quality_table(model_uri: str, data: str, device: str = "auto", per_image: bool = False) -> str:
    """Markdown table of the model's mean metrics and the trimap-only floor on `data` (+ per-image rows)."""
    net = load_net(model_uri, pick_device(device))
    t0 = time.time()
    means, rows, _ = score(net, data, None, desc="bench_quality")
    seconds = time.time() - t0
    floor = trimap_only_score(data)
    head = "| method | " + " | ".join(METRICS) + " | SAD / floor |"
    lines = [f"{len(rows)} images of {data}; official metrics (SAD, Grad, Conn / 1000), means; "
             f"{seconds / len(rows):.2f} s per image", "", head, "|---" * (len(METRICS) + 2) + "|"]
    for name, m in (("trimap only (0.5 in the unknown region)", floor), (model_uri, means)):
        lines.append(f"| {name} | " + " | ".join(_fmt(k, m[k]) for k in METRICS) + f" | {m['SAD'] / floor['SAD']:.0%} |")
    if per_image:
        lines += ["", "| image | " + " | ".join(METRICS) + " |", "|---" * (len(METRICS) + 1) + "|"]
        lines += [f"| {r['key']} | " + " | ".join(_fmt(k, r[k]) for k in METRICS) + " |" for r in rows]
    return "\n".join(lines)


def _fmt(metric: str, value: float) -> str:
    return f"{value:.4f}" if metric == "MSE" else f"{value:.3f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_uri")
    p.add_argument("data_dir", help="Composition-1k layout (merged/ alpha/ trimaps/) or a shard directory")
    p.add_argument("--device", default="auto")
    p.add_argument("--per-image", action="store_true", help="also print one row per image")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    print(f"{platform.processor() or platform.machine()}, python {platform.python_version()}, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(quality_table(args.model_uri, args.data_dir, args.device, args.per_image))
    return 0


if __name__ == "__main__":
    sys.exit(main())
