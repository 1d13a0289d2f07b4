"""Launch-tile sweep of the fused reassembly kernels: each kernel timed alone with its current tile
(`model.fused_ops.DEFAULT_TILES`) and every other candidate of `CHANNEL_TILES` / `TAP_TILES`, at the training shapes
and the recipe's settings (batch 16, crop 512, bf16 features and fp32 kernels in channels_last, as autocast and
`perf.channels_last` give them). Prints, per kernel and shape, the current and the best tile with their times; per
kernel the one tile that is fastest summed over the shapes; and `DEFAULT_TILES` with those winners, ready to paste.
Every tile's output is compared with the current tile's.

    python3 benchmarks/bench_tiles.py                       # on a GPU (benchmarks/gpu_check.py runs it)
    TRITON_INTERPRET=1 .venv/bin/python benchmarks/bench_tiles.py --device cpu --tiny   # the code path on a CPU
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from model import fused_ops  # noqa: E402
from model.fused_ops import CHANNEL_TILES, DEFAULT_TILES, TAP_TILES, LaunchTile  # noqa: E402

# (op, channels, low-resolution side) of the A2U reassembly calls at crop 512 (as in bench_step.OPS_SHAPES), the
# largest (the most time in a step) first, so that a sweep cut short by --budget-s has measured those
SHAPES = [("up", 64, 256), ("down", 64, 256), ("up", 64, 128), ("down", 64, 128),
          ("up", 128, 64), ("down", 128, 64), ("up", 256, 32), ("down", 256, 32)]
KERNEL_SIZE = {"up": 3, "down": 6}


def _inputs(op: str, batch: int, c: int, side: int, device: torch.device, channels_last: bool):
    """Features (bf16 on CUDA, fp32 on CPU), kernels (fp32, softmax-normalised) and an upstream gradient."""
    k = KERNEL_SIZE[op]
    feat_side, out_side = (side, 2 * side) if op == "up" else (2 * side, side)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(batch, c, feat_side, feat_side, device=device, dtype=dtype).contiguous(memory_format=fmt)
    m = (torch.rand(batch, k * k, 2 * side if op == "up" else side, 2 * side if op == "up" else side, device=device)
         .softmax(1).contiguous(memory_format=fmt))
    go = torch.randn(batch, c, out_side, out_side, device=device, dtype=dtype).contiguous(memory_format=fmt)
    return x, m, go


def _launch(kernel: str, x, m, go) -> Callable[[], torch.Tensor]:
    """A call of one kernel through its launcher in `fused_ops` (forward, feature gradient or kernel gradient)."""
    op, part = kernel.split("_", 1)
    k = KERNEL_SIZE[op]
    fwd, bwd = ((fused_ops._up_forward, fused_ops._up_backward) if op == "up"
                else (fused_ops._down_forward, fused_ops._down_backward))
    if part == "fwd":
        return lambda: fwd(x, m, k, 1, 2)
    if part == "grad_x":
        return lambda: bwd(go, x, m, k, 1, 2, True, False)[0]
    return lambda: bwd(go, x, m, k, 1, 2, False, True)[1]


def _median_ms(fn: Callable[[], torch.Tensor], device: torch.device, iters: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize(device)
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def _tile_name(t: LaunchTile) -> str:
    """"default/w4", "c16×p128/w8" (channels × pixels), "p64/w2" (taps × pixels: pixels only)."""
    if t.block_c is None and t.block_p is None:
        return f"default/w{t.num_warps}"
    return (f"c{t.block_c}×" if t.block_c else "") + f"p{t.block_p}/w{t.num_warps}"


def tile_by_name(kernel: str, name: str) -> LaunchTile:
    """The candidate (or current default) tile of `kernel` that `_tile_name` calls `name`."""
    pool = [DEFAULT_TILES[kernel], *(TAP_TILES if kernel.endswith("grad_m") else CHANNEL_TILES)]
    return next(t for t in pool if _tile_name(t) == name)


def _tile_source(t: LaunchTile) -> str:
    return f"LaunchTile({t.block_c}, {t.block_p}, {t.num_warps})"


def sweep(device: torch.device, batch: int, shapes: list[tuple[str, int, int]], iters: int, warmup: int,
          channels_last: bool, budget_s: float | None = None) -> list[dict]:
    """One row per (kernel, shape): milliseconds of every tile, the best one, and whether each tile's output
    matched the kernel's current tile's (relative error ≤ 1e-2 in bf16, ≤ 1e-5 in fp32; the sums are the same, so
    they are normally identical). No new shape starts after `budget_s` seconds (compiling every tile takes most of
    the time on a first run)."""
    rows = []
    t_end = None if budget_s is None else time.monotonic() + budget_s
    for op, c, side in shapes:
        if t_end is not None and time.monotonic() > t_end:
            print(f"# budget of {budget_s:.0f} s spent: shapes from {op} {c}×{side}² on not measured", flush=True)
            break
        x, m, go = _inputs(op, batch, c, side, device, channels_last)
        for part in ("fwd", "grad_x", "grad_m"):
            kernel = f"{op}_{part}"
            default = DEFAULT_TILES[kernel]  # the kernel's tile now, then every other candidate
            tiles = [default] + [t for t in (TAP_TILES if part == "grad_m" else CHANNEL_TILES) if t != default]
            fn = _launch(kernel, x, m, go)
            reference = fn().float()
            times, mismatched = {}, []
            for tile in tiles:
                with fused_ops.launch_tiles({kernel: tile}):
                    out = fn().float()
                    err = ((out - reference).norm() / reference.norm().clamp_min(1e-30)).item()
                    if not err <= (1e-2 if x.dtype == torch.bfloat16 else 1e-5):
                        mismatched.append(_tile_name(tile))
                    times[_tile_name(tile)] = round(_median_ms(fn, device, iters, warmup), 4)
            default = _tile_name(default)
            best = min(times, key=times.get)
            row = {"kernel": kernel, "shape": f"{batch}×{c}×{side}²", "default": default,
                   "default_ms": times[default], "best": best, "best_ms": times[best],
                   "speedup": round(times[default] / times[best], 3), "ms": times, "mismatched": mismatched}
            rows.append(row)
            print(json.dumps(row), flush=True)
        del x, m, go
    return rows


def best_per_kernel(rows: list[dict]) -> dict[str, dict]:
    """For each kernel: the tile with the least time summed over the shapes, against the default tile's sum."""
    out = {}
    for kernel in fused_ops.KERNELS:
        mine = [r for r in rows if r["kernel"] == kernel]
        if not mine:
            continue
        totals = {t: sum(r["ms"][t] for r in mine) for t in mine[0]["ms"]}
        best = min(totals, key=totals.get)
        default = mine[0]["default"]
        out[kernel] = {"default": default, "default_ms": round(totals[default], 3), "best": best,
                       "best_ms": round(totals[best], 3), "speedup": round(totals[default] / totals[best], 3)}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--nchw", action="store_true", help="NCHW tensors instead of channels_last")
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--tiny", action="store_true", help="batch 1 and maps 1/16 of the side (a CPU dry run)")
    parser.add_argument("--budget-s", type=float, default=120.0,
                        help="start no new shape after this many seconds (the summary covers the measured ones)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    shapes = SHAPES
    if args.tiny:
        args.batch, args.iters, args.warmup = 1, 1, 0
        shapes = [(op, min(c, 24), max(4, side // 16)) for op, c, side in SHAPES[:1] + SHAPES[-1:]]
    rows = sweep(device, args.batch, shapes, args.iters, args.warmup, not args.nchw, args.budget_s)
    summary = best_per_kernel(rows)
    total_default = sum(v["default_ms"] for v in summary.values())
    total_best = sum(v["best_ms"] for v in summary.values())
    print(json.dumps({"per_kernel": summary, "total_default_ms": round(total_default, 3),
                      "total_best_ms": round(total_best, 3)}))
    print("| kernel | default tile | ms (sum over shapes) | best tile | ms | speed-up |\n|---|---|---|---|---|---|")
    for kernel, v in summary.items():
        print(f"| {kernel} | {v['default']} | {v['default_ms']:.3f} | {v['best']} | {v['best_ms']:.3f} | "
              f"{v['speedup']:.2f}× |")
    winners = {k: (summary[k]["best"] if summary[k]["speedup"] >= 1.03 else summary[k]["default"]) if k in summary
               else _tile_name(DEFAULT_TILES[k]) for k in fused_ops.KERNELS}
    print("# model/fused_ops.py with the winners (≥ 3 % faster summed over the shapes; else, or where not measured, "
          "the tile stays):")
    print("DEFAULT_TILES = {" + ", ".join(f'"{k}": {_tile_source(tile_by_name(k, name))}'
                                          for k, name in winners.items()) + "}")
    return 1 if any(r["mismatched"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
