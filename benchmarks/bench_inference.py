"""Time and peak memory of `model.inference.predict_alpha` with the real A2UMatting, and tiled-vs-untiled agreement.

Each measurement runs in a fresh child process so that its peak RSS (``ru_maxrss``) belongs to that image size alone.
The net is randomly initialised (seed 0; no trained weights exist yet), in eval mode; the input is a synthetic
smooth RGB image with a trimap whose unknown band covers about a third of the pixels.

    .venv/bin/python benchmarks/bench_inference.py speed --sizes 512 1024 2048 4096
    .venv/bin/python benchmarks/bench_inference.py speed --sizes 1024 --max-pixels 1000000000   # force untiled
    .venv/bin/python benchmarks/bench_inference.py compare --size 1024 --tile-pixels 262144
    .venv/bin/python benchmarks/bench_inference.py speed --sizes 4096 --max-tiles 1   # peak RSS, time extrapolated
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


def _finish(raw: np.ndarray, trimap: np.ndarray) -> np.ndarray:
    """predict_alpha's last steps (clip, ×255, round, copy known pixels) on a raw output."""
    alpha = np.rint(np.clip(raw, 0.0, 1.0) * 255.0)
    known = trimap != 128
    alpha[known] = trimap[known]
    return alpha.astype(np.uint8)


def child_compare(size: int, tile_pixels: int, overlap: int, threads: int) -> dict:
    """Untiled vs tiled output of the same image (raw net output and the final uint8 matte)."""
    from model.inference import plan_tiles, predict_raw
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
    alpha_full, alpha_tiled = _finish(raw_full, trimap), _finish(raw_tiled, trimap)
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
    parser.add_argument("mode", choices=["speed", "compare", "child-speed", "child-compare"])
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

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(_header())
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
