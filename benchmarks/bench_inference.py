"""Time and peak memory of `model.inference.predict_alpha` with the real A2UMatting, tiled-vs-untiled agreement, and the
CPU inference paths side by side against closed-form matting.

Each measurement runs in a fresh child process so that its peak RSS (``ru_maxrss``) belongs to that run alone.
``speed``/``compare``: the net is randomly initialised (seed 0), in eval mode; the input is a synthetic smooth RGB
image with a trimap whose unknown band covers about a third of the pixels.

``paths``: on real-dev (datasets/real-dev) and on synthetic 1 Mpx (1024²) and 4 Mpx (2048²) images, the same
``predict_raw`` call through each path — PyTorch eager as trained (``A2U_CPU_INFERENCE=reference``), the fast CPU
path (the default), onnxruntime on the exported ONNX file — and closed-form matting (pymatting's
``estimate_alpha_cf``, a different method: its difference is a quality difference, not rounding). Per path: seconds
per image and per megapixel (best of ``--rounds`` rounds, each round running every path back to back), peak RSS,
and the max abs difference of the raw output from PyTorch eager. ``interleaved``: the same paths in one process,
image by image in rotating order (load on a shared machine then falls on all paths alike; no memory figures).

    .venv/bin/python benchmarks/bench_inference.py speed --sizes 512 1024 2048 4096
    .venv/bin/python benchmarks/bench_inference.py speed --sizes 1024 --max-pixels 1000000000   # force untiled
    .venv/bin/python benchmarks/bench_inference.py compare --size 1024 --tile-pixels 262144
    .venv/bin/python benchmarks/bench_inference.py speed --sizes 4096 --max-tiles 1   # peak RSS, time extrapolated
    MLFLOW_TRACKING_URI=sqlite:///$PWD/runs/mlflow.db .venv/bin/python benchmarks/bench_inference.py paths \
        --model models:/a2u-matting@champion --sets real-dev 1mpx 4mpx --rounds 2
    ... benchmarks/bench_inference.py interleaved --model models:/a2u-matting@champion --onnx a2u.onnx --rounds 3
"""
from __future__ import annotations

import argparse
import json
import logging
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))


def synthetic_pair(size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A smooth RGB image and a trimap (0 / 128 band / 255) of ``size``×``size``."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size].astype(np.float32) / size
    image = np.empty((size, size, 3), dtype=np.uint8)
    for c in range(3):
        phase = rng.uniform(0, 2 * np.pi, 2)
        image[..., c] = (127.5 + 127 * np.sin(6 * xx + phase[0]) * np.cos(5 * yy + phase[1])).astype(np.uint8)
    radius = np.hypot(xx - 0.5, yy - 0.5)
    trimap = np.full((size, size), 128, dtype=np.uint8)
    trimap[radius < 0.2] = 255
    trimap[radius > 0.4] = 0
    return image, trimap


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _build_net(threads: int):
    import torch

    from model.net import A2UMatting

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    return A2UMatting().eval()


class _StopAfter(Exception):
    pass


def child_speed(size: int, max_pixels: int, overlap: int, threads: int, max_tiles: int | None) -> dict:
    """Run once in this process and report time and peak RSS.

    With ``max_tiles`` the run stops after that many tiles (a bench-only wrapper counts the net's calls): the peak
    RSS is already reached by the first tile (every tile has the same size and the full-size buffers exist from the
    start), and the total time is extrapolated from the mean time per tile.
    """
    import torch

    from model.inference import plan_tiles, predict_alpha

    net = _build_net(threads)
    image, trimap = synthetic_pair(size)
    padded = -(-size // 16) * 16
    tiles = plan_tiles(padded, padded, max_pixels, overlap)
    calls = []

    class Counting(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = net

        def forward(self, x):
            if max_tiles is not None and len(calls) >= max_tiles:
                raise _StopAfter
            out = self.inner(x)
            calls.append(time.perf_counter())
            return out

    rss_before = _rss_mib()
    start = time.perf_counter()
    alpha_mean = None
    try:
        alpha_mean = float(predict_alpha(Counting(), image, trimap, max_pixels=max_pixels, overlap=overlap).mean())
    except _StopAfter:
        pass
    seconds = time.perf_counter() - start
    per_tile = (calls[-1] - start) / len(calls)
    return {"size": size, "tiles": len(tiles), "tile": [tiles[0].height, tiles[0].width], "seconds": seconds,
            "tiles_run": len(calls), "seconds_per_tile": per_tile, "seconds_extrapolated": per_tile * len(tiles),
            "peak_rss_mib": _rss_mib(), "rss_before_mib": rss_before, "alpha_mean": alpha_mean}


def child_compare(size: int, tile_pixels: int, overlap: int, threads: int) -> dict:
    """Untiled vs tiled output of the same image (raw net output and the final uint8 matte)."""
    from model.inference import alpha_from_raw, plan_tiles, predict_raw
    from model.metrics import evaluate

    net = _build_net(threads)
    image, trimap = synthetic_pair(size)
    tiles = plan_tiles(size, size, tile_pixels, overlap)
    start = time.perf_counter()
    raw_full = predict_raw(net, image, trimap, max_pixels=size * size)
    t_full = time.perf_counter() - start
    start = time.perf_counter()
    raw_tiled = predict_raw(net, image, trimap, max_pixels=tile_pixels, overlap=overlap)
    t_tiled = time.perf_counter() - start
    unknown = trimap == 128
    diff = np.abs(raw_full - raw_tiled)[unknown]
    alpha_full, alpha_tiled = alpha_from_raw(raw_full, trimap), alpha_from_raw(raw_tiled, trimap)
    scores = evaluate(alpha_tiled, alpha_full, trimap)  # the untiled matte as "ground truth"
    return {
        "size": size, "tile_pixels": tile_pixels, "overlap": overlap, "tiles": len(tiles),
        "tile": [tiles[0].height, tiles[0].width], "seconds_untiled": t_full, "seconds_tiled": t_tiled,
        "raw_range_untiled": [float(raw_full[unknown].min()), float(raw_full[unknown].max())],
        "raw_std_untiled": float(raw_full[unknown].std()),
        "raw_abs_diff_mean": float(diff.mean()), "raw_abs_diff_p99": float(np.percentile(diff, 99)),
        "raw_abs_diff_max": float(diff.max()),
        "alpha_abs_diff_mean_units": float(np.abs(alpha_full.astype(int) - alpha_tiled)[unknown].mean()),
        "alpha_pixels_differing": float((alpha_full != alpha_tiled)[unknown].mean()),
        "metrics_tiled_vs_untiled": scores,
    }


PATHS = ("eager", "fast", "onnxruntime", "closed-form")
SETS = {"real-dev": None, "1mpx": 1024, "4mpx": 2048}


def load_set(name: str) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(key, RGB uint8, trimap uint8) of a benchmark set: the real-dev photographs, or one synthetic image."""
    from PIL import Image

    if SETS[name] is not None:
        image, trimap = synthetic_pair(SETS[name])
        return [(name, image, trimap)]
    root = REPO_ROOT / "datasets" / "real-dev"
    pairs = []
    for merged in sorted((root / "merged").glob("*.png")):
        image = np.asarray(Image.open(merged).convert("RGB"))
        trimap = np.asarray(Image.open(root / "trimaps" / merged.name).convert("L"))
        pairs.append((merged.stem, image, trimap))
    return pairs


def _load_model(model_uri: str):
    """The eval-mode net: `random` (released configuration, seed 0, BatchNorm statistics from one pass over
    noise) or any URI/checkpoint `jobs.model_uri.load_net` reads."""
    import torch

    import model.net  # noqa: F401 - this checkout's model package, before MLflow puts a logged copy on sys.path

    if model_uri != "random":
        from jobs.model_uri import load_net
        from jobs.tracking import use_tracking_uri

        use_tracking_uri(None)
        return load_net(model_uri, "cpu")
    from model.net import A2UMatting

    torch.manual_seed(0)
    net = A2UMatting()
    with torch.no_grad():
        net.train()(torch.randn(2, 4, 64, 64))
    return net.eval()


class _OnnxNet:
    """What predict_raw needs of a net (eval/train, parameters, a call), backed by an onnxruntime session."""

    training = False

    def __init__(self, path: str, threads: int) -> None:
        from jobs.export import onnx_session

        self.session = onnx_session(path, threads)
        self.name = self.session.get_inputs()[0].name

    def parameters(self):
        return iter(())

    buffers = parameters

    def train(self, mode: bool = True) -> "_OnnxNet":
        return self

    def eval(self) -> "_OnnxNet":
        return self

    def __call__(self, x):
        import torch

        return torch.from_numpy(self.session.run(None, {self.name: x.numpy()})[0])


def child_export(model: str, out: str, threads: int) -> dict:
    """Export the model to ONNX as `python -m jobs export` does (inference form, verified)."""
    import torch

    from jobs.export import _export_onnx, verify_export

    torch.set_num_threads(threads)
    net = _load_model(model)
    start = time.perf_counter()
    _export_onnx(net, Path(out))
    seconds = time.perf_counter() - start
    errors = verify_export(net, Path(out), "onnx")
    return {"seconds": seconds, "errors": errors, "mib": Path(out).stat().st_size / 2**20}


def child_path(path: str, set_name: str, model: str, onnx_file: str, threads: int, out: str) -> dict:
    """Run one path over one set (after one untimed warm-up call on the first image); save the raw outputs."""
    import torch

    torch.set_num_threads(threads)
    pairs = load_set(set_name)
    if path == "closed-form":
        import pymatting

        def run(image: np.ndarray, trimap: np.ndarray) -> np.ndarray:
            return pymatting.estimate_alpha_cf(image / 255.0, trimap / 255.0).astype(np.float32)
        warm = pairs[0] if len(pairs) > 1 else (None, *synthetic_pair(64))  # numba compiles on the first call
    else:
        from model.cpu_inference import set_cpu_inference
        from model.inference import predict_raw

        set_cpu_inference("reference" if path == "eager" else "fast")
        net = _OnnxNet(onnx_file, threads) if path == "onnxruntime" else _load_model(model)

        def run(image: np.ndarray, trimap: np.ndarray) -> np.ndarray:
            return predict_raw(net, image, trimap)
        warm = pairs[0] if len(pairs) > 1 else (None, *synthetic_pair(256))
    run(warm[1], warm[2])
    rss_before = _rss_mib()
    outputs, seconds = {}, 0.0
    for key, image, trimap in pairs:
        start = time.perf_counter()
        outputs[key] = run(image, trimap)
        seconds += time.perf_counter() - start
    np.savez(out, **outputs)
    pixels = sum(t.size for _, _, t in pairs)
    return {"path": path, "set": set_name, "images": len(pairs), "seconds": seconds,
            "s_per_image": seconds / len(pairs), "s_per_mpx": seconds / (pixels / 1e6),
            "mpx_per_image": pixels / 1e6 / len(pairs), "peak_rss_mib": _rss_mib(), "rss_before_mib": rss_before}


def _load_average() -> str:
    return " ".join(f"{v:.1f}" for v in __import__("os").getloadavg())


def run_paths(args: argparse.Namespace) -> None:
    """The `paths` comparison: export once, then every path on every set, `rounds` times, back to back."""
    import tempfile

    work = Path(args.work or tempfile.mkdtemp(prefix="a2u-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    common = ["--model", args.model, "--threads", str(args.threads)]
    onnx_file = args.onnx or str(work / "a2u.onnx")
    if "onnxruntime" in args.paths and not args.onnx:
        res = _spawn(["child-export", "--out", onnx_file, *common], args.timeout)
        print(f"# ONNX export: {json.dumps(res)}", flush=True)
    print(f"# model {args.model}, threads {args.threads}, rounds {args.rounds}, load average {_load_average()}")
    print("| set (mean Mpx/image) | path | s / image | s / Mpx | speed-up vs eager | vs closed-form | peak RSS MiB "
          "| max abs diff vs eager (raw) |")
    print("|---|---|---|---|---|---|---|---|")
    for set_name in args.sets:
        best: dict[str, dict] = {}
        for round_index in range(args.rounds):
            order = list(args.paths) if round_index % 2 == 0 else list(reversed(args.paths))
            for path in order:
                out = str(work / f"{set_name}-{path}.npz")
                res = _spawn(["child-path", "--path", path, "--set", set_name, "--onnx", onnx_file, "--out", out,
                              *common], args.timeout)
                if "error" in res:
                    print(f"# {set_name} {path}: FAILED {res['error']}\n{res['stderr_tail']}", flush=True)
                    continue
                if path not in best or res["seconds"] < best[path]["seconds"]:
                    best[path] = res
        ref = np.load(work / f"{set_name}-eager.npz") if "eager" in best else None
        for path in args.paths:
            if path not in best:
                continue
            res = best[path]
            diff = "—"
            if ref is not None:
                got = np.load(work / f"{set_name}-{path}.npz")
                diff = f"{max(float(np.abs(got[k] - ref[k]).max()) for k in ref.files):.2g}"
                if path == "closed-form":
                    diff += " (other method)"
            speed = (f"{best['eager']['seconds'] / res['seconds']:.2f}×" if "eager" in best else "—")
            vs_cf = (f"{best['closed-form']['seconds'] / res['seconds']:.2f}×" if "closed-form" in best else "—")
            print(f"| {set_name} ({res['mpx_per_image']:.3f}) | {path} | {res['s_per_image']:.3f} | "
                  f"{res['s_per_mpx']:.2f} | {speed} | {vs_cf} | {res['peak_rss_mib']:.0f} | {diff} |", flush=True)
    print(f"# load average after: {_load_average()}")


def run_interleaved(args: argparse.Namespace) -> None:
    """All paths in one process, image by image in rotating order, `rounds` times: on a shared machine the load
    then falls on every path alike (peak memory needs the per-process `paths` mode). Median over rounds."""
    import statistics

    import pymatting
    import torch

    from model.cpu_inference import cpu_inference
    from model.inference import predict_raw

    torch.set_num_threads(args.threads)
    net = _load_model(args.model)
    onnx_net = _OnnxNet(args.onnx, args.threads) if "onnxruntime" in args.paths else None

    def run(path: str, image: np.ndarray, trimap: np.ndarray) -> np.ndarray:
        if path == "closed-form":
            return pymatting.estimate_alpha_cf(image / 255.0, trimap / 255.0).astype(np.float32)
        with cpu_inference("reference" if path == "eager" else "fast"):
            return predict_raw(onnx_net if path == "onnxruntime" else net, image, trimap)

    print(f"# interleaved, model {args.model}, threads {args.threads}, rounds {args.rounds}, "
          f"load average {_load_average()}")
    print("| set (mean Mpx/image) | path | s / image | s / Mpx | speed-up vs eager | vs closed-form "
          "| max abs diff vs eager (raw) |")
    print("|---|---|---|---|---|---|---|")
    for set_name in args.sets:
        pairs = load_set(set_name)
        warm = synthetic_pair(64)
        for path in args.paths:
            run(path, *warm)
        per_round: dict[str, list[float]] = {p: [] for p in args.paths}
        outputs: dict[str, dict[str, np.ndarray]] = {p: {} for p in args.paths}
        for round_index in range(args.rounds):
            spent = dict.fromkeys(args.paths, 0.0)
            for index, (key, image, trimap) in enumerate(pairs):
                shift = (index + round_index) % len(args.paths)
                for path in args.paths[shift:] + args.paths[:shift]:
                    start = time.perf_counter()
                    outputs[path][key] = run(path, image, trimap)
                    spent[path] += time.perf_counter() - start
            for path in args.paths:
                per_round[path].append(spent[path])
        pixels = sum(t.size for _, _, t in pairs)
        median = {p: statistics.median(v) for p, v in per_round.items()}
        for path in args.paths:
            diff = "—"
            if "eager" in outputs:
                diff = f"{max(float(np.abs(outputs[path][k] - outputs['eager'][k]).max()) for k in outputs[path]):.2g}"
                diff += " (other method)" if path == "closed-form" else ""
            vs_eager = f"{median['eager'] / median[path]:.2f}×" if "eager" in median else "—"
            vs_cf = f"{median['closed-form'] / median[path]:.2f}×" if "closed-form" in median else "—"
            print(f"| {set_name} ({pixels / 1e6 / len(pairs):.3f}) | {path} | {median[path] / len(pairs):.3f} | "
                  f"{median[path] / (pixels / 1e6):.2f} | {vs_eager} | {vs_cf} | {diff} |", flush=True)
    print(f"# load average after: {_load_average()}")


def _spawn(args: list[str], timeout: float) -> dict:
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, timeout=timeout,
                          cwd=REPO_ROOT)
    if proc.returncode != 0:
        return {"error": f"exit {proc.returncode}", "stderr_tail": proc.stderr[-2000:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _header() -> str:
    import torch

    return (f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.processor() or platform.machine()}, "
            f"torch {torch.__version__}, numpy {np.__version__}, python {platform.python_version()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["speed", "compare", "paths", "interleaved", "child-speed", "child-compare", "child-export",
                                         "child-path"])
    parser.add_argument("--model", default="random", help="paths: `random` or a model URI / checkpoint")
    parser.add_argument("--sets", nargs="+", choices=list(SETS), default=list(SETS))
    parser.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS))
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--onnx", default=None, help="paths: an exported ONNX file (default: export one)")
    parser.add_argument("--work", default=None, help="paths: folder for the ONNX file and outputs (default: temp)")
    parser.add_argument("--path", choices=PATHS)
    parser.add_argument("--set", choices=list(SETS))
    parser.add_argument("--out", default=None)
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048, 4096])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--max-pixels", type=int, default=None, help="default: model.inference.DEFAULT_MAX_PIXELS")
    parser.add_argument("--tile-pixels", type=int, default=512 * 512)
    parser.add_argument("--overlap", type=int, default=None, help="default: model.inference.DEFAULT_TILE_OVERLAP")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-tiles", type=int, default=None,
                        help="stop after this many tiles (peak RSS is reached on the first; time is extrapolated)")
    parser.add_argument("--timeout", type=float, default=3600.0)
    args = parser.parse_args()

    from model.inference import DEFAULT_MAX_PIXELS, DEFAULT_TILE_OVERLAP

    max_pixels = args.max_pixels or DEFAULT_MAX_PIXELS
    overlap = DEFAULT_TILE_OVERLAP if args.overlap is None else args.overlap
    if args.mode == "child-speed":
        print(json.dumps(child_speed(args.size, max_pixels, overlap, args.threads, args.max_tiles)))
        return
    if args.mode == "child-compare":
        print(json.dumps(child_compare(args.size, args.tile_pixels, overlap, args.threads)))
        return
    if args.mode == "child-export":
        print(json.dumps(child_export(args.model, args.out, args.threads)))
        return
    if args.mode == "child-path":
        print(json.dumps(child_path(args.path, args.set, args.model, args.onnx, args.threads, args.out)))
        return

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(_header())
    if args.mode == "paths":
        run_paths(args)
        return
    if args.mode == "interleaved":
        run_interleaved(args)
        return
    common = ["--overlap", str(overlap), "--threads", str(args.threads)]
    if args.mode == "speed":
        print(f"# max_pixels={max_pixels} overlap={overlap} threads={args.threads}")
        print("| image | tiles (tile size) | time s | peak RSS MiB | RSS before predict MiB |")
        print("|---|---|---|---|---|")
        for size in args.sizes:
            extra = [] if args.max_tiles is None else ["--max-tiles", str(args.max_tiles)]
            res = _spawn(["child-speed", "--size", str(size), "--max-pixels", str(max_pixels), *common, *extra],
                         args.timeout)
            if "error" in res:
                print(f"| {size}² | FAILED {res['error']} | | | |\n{res['stderr_tail']}")
                continue
            partial = res["tiles_run"] < res["tiles"]
            timing = (f"{res['seconds_extrapolated']:.0f} (extrapolated from {res['tiles_run']} tile(s), "
                      f"{res['seconds_per_tile']:.0f} s each)" if partial else f"{res['seconds']:.1f}")
            print(f"| {size}² | {res['tiles']} ({res['tile'][0]}×{res['tile'][1]}) | {timing} | "
                  f"{res['peak_rss_mib']:.0f} | {res['rss_before_mib']:.0f} |", flush=True)
    else:
        res = _spawn(["child-compare", "--size", str(args.size), "--tile-pixels", str(args.tile_pixels), *common],
                     args.timeout)
        print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
