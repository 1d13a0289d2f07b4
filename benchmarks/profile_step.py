"""Where a training step's time goes: torch.profiler over a few steps of `bench_step.Stepper`, the device's kernel
time grouped into categories (convolution / matmul, A2U reassembly, batch norm, elementwise, ...), the top kernels,
the kernel count, and how busy the device was against the step's wall time (a GPU that is idle between kernels is
waiting for the host: launch overhead, syncs). On CPU the same grouping is done over the operators' own CPU time.

Answers "what to make faster" for the training-step target; `benchmarks/gpu_check.py` runs it on the GPU.

    .venv/bin/python benchmarks/profile_step.py --device cpu --batch 2 --crop 128
    python3 benchmarks/profile_step.py --batch 16 --crop 512 --dtype bf16 --channels-last   # on a GPU
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Iterable

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.bench_step import PHASE_PREFIX, Stepper, synthetic_batch  # noqa: E402
from model.net import A2UMatting  # noqa: E402

# (category, pattern on the lower-cased kernel or operator name); the first match wins, so the order matters:
# cuDNN's batch-norm kernels are named cudnn::bn_*, and convolution kernels carry nhwc/nchw in their names
CATEGORIES: list[tuple[str, re.Pattern[str]]] = [(name, re.compile(pattern)) for name, pattern in [
    ("a2u reassembly", r"up_fwd_kernel|up_grad_x_kernel|up_grad_m_kernel|down_fwd_kernel|down_grad_x_kernel"
                       r"|down_grad_m_kernel|a2u::"),
    ("optimizer", r"adam|multi_tensor"),
    ("batch norm", r"batch_norm|batchnorm|bn_fw|bn_bw|cudnn::bn"),
    ("convolution / matmul", r"conv|gemm|xmma|cutlass|cublas|mkldnn|onednn|addmm|\bmm\b|bmm|matmul|wgrad|dgrad"),
    ("softmax", r"softmax"),
    ("reduction", r"reduce|\bsum\b|::sum|mean|norm"),
    ("layout / copy", r"copy|transpose|permute|contiguous|::cat|catarray|memcpy|memset|nchw|nhwc|clone|pad|index"),
    ("elementwise", r"elementwise|vectorized|unrolled|leaky|relu|sigmoid|::add|::mul|::sub|::div|where|clamp"
                    r"|abs|pow|sqrt|exp|fill"),
]]


def category(name: str) -> str:
    """The category of a kernel or operator name ("other" when no pattern matches)."""
    low = name.lower()
    for cat, pattern in CATEGORIES:
        if pattern.search(low):
            return cat
    return "other"


def _union_us(intervals: Iterable[tuple[float, float]]) -> float:
    """Length of the union of [start, end) intervals: time with at least one kernel running."""
    total, end = 0.0, float("-inf")
    for s, e in sorted(intervals):
        if s > end:
            total += e - s
            end = e
        elif e > end:
            total += e - end
            end = e
    return total


def phase(event: Any) -> str:
    """The step phase an operator ran in: the nearest `bench_step` phase label above it (forward, loss, backward,
    optimizer), "backward" under the autograd engine's thread (it runs outside the label), else "other"."""
    e = event
    while e is not None:
        if e.name.startswith(PHASE_PREFIX):
            return e.name[len(PHASE_PREFIX):]
        if e.name.startswith("autograd::engine::evaluate_function"):
            return "backward"
        e = e.cpu_parent
    return "other"


def summarise(events: Iterable[Any], steps: int, device: str, top: int = 15) -> dict[str, Any]:
    """Group profiler events (torch.autograd.profiler FunctionEvent) into per-step milliseconds.

    On CUDA: device kernels (and memcpy/memset) by category, their count, the busy time (union of their
    intervals), and by phase through the CPU operator that launched each kernel. On CPU: each operator's own CPU
    time (`self_cpu_time_total`: children excluded, so the parts add up), by category and by phase.
    """
    events = list(events)
    by_cat: dict[str, float] = {}
    by_phase: dict[str, float] = {}
    by_name: dict[str, list[float]] = {}
    intervals = []
    for e in events:
        if e.device_type != DeviceType.CPU or e.is_async:
            continue
        us = sum(k.duration for k in e.kernels) if device == "cuda" else e.self_cpu_time_total
        if us > 0:
            p = phase(e)
            by_phase[p] = by_phase.get(p, 0.0) + us
    for e in events:
        if device == "cuda":
            if e.device_type != DeviceType.CUDA:
                continue
            us = e.time_range.elapsed_us()
            intervals.append((e.time_range.start, e.time_range.end))
        else:
            if e.device_type != DeviceType.CPU or e.self_cpu_time_total <= 0:
                continue
            us = e.self_cpu_time_total
        cat = category(e.name)
        by_cat[cat] = by_cat.get(cat, 0.0) + us
        entry = by_name.setdefault(e.name, [0.0, 0])
        entry[0] += us
        entry[1] += 1
    total_us = sum(by_cat.values())
    result: dict[str, Any] = {
        "device": device,
        "steps": steps,
        "kernel_ms_per_step" if device == "cuda" else "op_cpu_ms_per_step": round(total_us / steps / 1e3, 3),
        "categories_ms_per_step": {c: round(us / steps / 1e3, 3)
                                   for c, us in sorted(by_cat.items(), key=lambda kv: -kv[1])},
        "top": [{"name": n[:160], "ms_per_step": round(us / steps / 1e3, 3), "calls_per_step": round(k / steps, 1),
                 "category": category(n)}
                for n, (us, k) in sorted(by_name.items(), key=lambda kv: -kv[1][0])[:top]],
        "count_per_step": round(sum(k for _, k in by_name.values()) / steps, 1),
        "phases_ms_per_step": {p: round(us / steps / 1e3, 3)
                               for p, us in sorted(by_phase.items(), key=lambda kv: -kv[1])},
    }
    if device == "cuda":
        result["busy_ms_per_step"] = round(_union_us(intervals) / steps / 1e3, 3)
    return result


def wall_ms_per_step(stepper: Stepper, inputs, target, iters: int) -> float:
    """Median wall milliseconds of an unprofiled step (synchronised on CUDA)."""
    cuda = stepper.device.type == "cuda"
    times = []
    for _ in range(iters):
        if cuda:
            torch.cuda.synchronize(stepper.device)
        t0 = time.perf_counter()
        stepper.step(inputs, target)
        if cuda:
            torch.cuda.synchronize(stepper.device)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def step_flops(stepper: Stepper, inputs, target) -> float:
    """Floating-point operations of one training step (convolutions and matmuls: what `FlopCounterMode` has
    formulas for; the A2U reassembly, norms and elementwise work are memory-bound and not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        stepper.step(inputs, target)
    return float(counter.get_total_flops())


def profile_training_step(batch: int, crop: int, device: str, dtype: str = "fp32", channels_last: bool = False,
                          warmup: int = 2, steps: int = 3, iters: int = 5, top: int = 15,
                          cudnn_benchmark: bool = True) -> dict[str, Any]:
    """Time `iters` unprofiled steps, then profile `steps` more; return `summarise`'s figures plus the wall time
    and (on CUDA) the fraction of it the device was busy. `cudnn_benchmark` as training's perf.cudnn_benchmark
    (the warm-up steps absorb cuDNN's timing)."""
    dev = torch.device(device)
    torch.backends.cudnn.benchmark = cudnn_benchmark and dev.type == "cuda"
    torch.manual_seed(0)
    stepper = Stepper(A2UMatting(), dev, dtype, False, channels_last)
    inputs, target = synthetic_batch(batch, crop, dev)
    for _ in range(warmup):
        stepper.step(inputs, target)
    flops = step_flops(stepper, inputs, target)
    wall = wall_ms_per_step(stepper, inputs, target, iters)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            stepper.step(inputs, target)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
    result = summarise(prof.events(), steps, dev.type, top)
    result.update(batch=batch, crop=crop, dtype=dtype, channels_last=channels_last,
                  cudnn_benchmark=torch.backends.cudnn.benchmark, wall_ms_per_step=round(wall, 2),
                  images_per_s=round(batch / wall * 1e3, 1), conv_matmul_tflop_per_step=round(flops / 1e12, 4),
                  achieved_tflop_per_s=round(flops / wall / 1e9, 2))
    if dev.type == "cuda":
        result["device_busy_fraction"] = round(result["busy_ms_per_step"] / wall, 3)
    return result


def markdown(result: dict[str, Any]) -> str:
    key = "kernel_ms_per_step" if result["device"] == "cuda" else "op_cpu_ms_per_step"
    total = result[key] or 1.0
    lines = [f"{result['batch']} × {result['crop']}², {result['dtype']}, channels_last {result['channels_last']}, "
             f"{result['device']}: wall {result['wall_ms_per_step']} ms/step, {key} {result[key]}, "
             f"{result['conv_matmul_tflop_per_step']} TFLOP of convolution/matmul per step "
             f"({result['achieved_tflop_per_s']} TFLOP/s)"
             + (f", busy {result['busy_ms_per_step']} ms ({result['device_busy_fraction']:.0%})"
                if "busy_ms_per_step" in result else ""), "",
             "| category | ms / step | share |", "|---|---|---|"]
    lines += [f"| {c} | {ms:.2f} | {ms / total:.0%} |" for c, ms in result["categories_ms_per_step"].items()]
    lines += ["", "| phase | ms / step | share |", "|---|---|---|"]
    lines += [f"| {p} | {ms:.2f} | {ms / total:.0%} |" for p, ms in result["phases_ms_per_step"].items()]
    lines += ["", "| kernel / operator | category | ms / step | calls / step |", "|---|---|---|---|"]
    lines += [f"| `{t['name'][:90]}` | {t['category']} | {t['ms_per_step']:.2f} | {t['calls_per_step']} |"
              for t in result["top"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--crop", type=int, default=512)
    parser.add_argument("--dtype", choices=("fp32", "bf16"), default="bf16")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--no-cudnn-benchmark", action="store_true", help="cuDNN's default algorithm choice")
    parser.add_argument("--steps", type=int, default=3, help="profiled steps")
    parser.add_argument("--iters", type=int, default=5, help="unprofiled steps timed for the wall time")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args(argv)
    result = profile_training_step(args.batch, args.crop, args.device, args.dtype, args.channels_last,
                                   steps=args.steps, iters=args.iters, top=args.top,
                                   cudnn_benchmark=not args.no_cudnn_benchmark)
    print(json.dumps(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
