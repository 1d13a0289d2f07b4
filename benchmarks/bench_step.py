"""Full A2U training step (forward + §4.3 loss + backward + Adam): images/s and peak memory, our path beside
in-benchmark baselines, with a correctness check against the reference path at every measured shape.

Variants (same net, same initial weights, same batch; only the A2U pieces are swapped):
- ``ours``            batched kernel generator (model.kernel_generator) + `model.ops` (fused Triton on CUDA, the
                      reference tap loop on CPU; `$A2U_OPS_BACKEND` honoured);
- ``per-sample-gen``  the generator replaced by a port of the official per-sample Python loop (docs/model.md §1.2);
- ``unfold``          the reassembly replaced by a plain unfold + einsum formulation;
- ``official-like``   both baselines at once (per-sample generator + unfold: the official structure, but with unfold in
                      place of the official CUDA kernels, which are not part of this repository).

Correctness: for every (batch, crop, dtype) a seeded step of each variant is compared with the reference path
(fp32, the reference ops backend, batched generator) — relative L2 error of the output and of all parameter
gradients; NaN/inf fail. Timing: CUDA events (GPU) / perf_counter (CPU), median of --iters after --warmup.
Peak memory: `torch.cuda.max_memory_allocated` (GPU) / RSS growth during the first step, sampled every 2 ms (CPU,
approximate).

    .venv/bin/python benchmarks/bench_step.py                       # GPU: batch 8 and 16, crop 512, fp32 + bf16
    .venv/bin/python benchmarks/bench_step.py --device cpu --cpu-small   # CPU: batch 2, 4 at crop 128
    .venv/bin/python benchmarks/bench_step.py --compile --channels-last  # GPU extras
    .venv/bin/python benchmarks/bench_step.py --generator --batch 16 --channels-last   # kernel generator alone
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import torch
import torch._dynamo
import torch.nn.functional as F
from torch.profiler import record_function

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import model.net as net_module  # noqa: E402
from model import ops  # noqa: E402
from model.fused_ops import current_backend, ops_backend  # noqa: E402
from model.ops import unfold_downsample, unfold_upsample  # noqa: E402
from model.kernel_generator import A2UKernelGenerator  # noqa: E402
from model.losses import matting_loss  # noqa: E402
from model.net import A2UMatting, parameter_groups  # noqa: E402

PHASE_PREFIX = "phase:"
VARIANTS = ("ours", "per-sample-gen", "unfold", "official-like")
TOLERANCE = {"fp32": 2e-3, "bf16": 8e-2}


# ------------------------------------------------------------------------------------------------ baselines
def per_sample_generator_forward(gen: A2UKernelGenerator, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Port of the official generator (docs/model.md §1.2): one tiny depthwise conv, GroupNorm, projection per sample.

    Rank 1 only (the official code hard-codes d = 1); group-major output layout like `A2UKernelGenerator`.
    """
    if gen.rank != 1:
        raise ValueError("per-sample generator port: the official code supports rank 1 only")
    n, c = x.shape[:2]
    s, g, ke = gen.up_kernel_size, gen.groups, gen.encode_kernel_size
    downs, ups = [], []
    for i in range(n):
        xi = x[i:i + 1]
        u = gen.bconv_U(xi)
        v = gen.bconv_V(xi)
        p_up = gen.bconv_UP(xi).reshape(1, 4 * s * s * g, 1, 1)
        p_down = gen.bconv_DP(xi).reshape(1, 4 * s * s * g, 1, 1)
        wu = u.reshape(1, 1, ke, ke).expand(c, 1, ke, ke) if gen.share else u.reshape(c, 1, ke, ke)
        wv = v.reshape(1, 1, ke, ke).expand(c, 1, ke, ke) if gen.share else v.reshape(c, 1, ke, ke)
        a = gen.bnu(F.conv2d(xi, wu, stride=2, padding=gen.padding, groups=c))
        b = gen.bnv(F.conv2d(xi, wv, stride=2, padding=gen.padding, groups=c))
        affinity = (a * b).sum(dim=1, keepdim=True) / math.sqrt(c)
        h, w = affinity.shape[-2:]
        up = F.pixel_shuffle(p_up * affinity, 2).reshape(1, g, s * s, 2 * h, 2 * w).sigmoid()
        if s > 1:
            up = up.softmax(dim=2)
        down = (p_down * affinity).reshape(1, g, 4 * s * s, h, w).softmax(dim=2)
        downs.append(down.reshape(1, g * 4 * s * s, h, w))
        ups.append(up.reshape(1, g * s * s, 2 * h, 2 * w))
    return torch.cat(downs), torch.cat(ups)


@contextlib.contextmanager
def swapped(variant: str) -> Iterator[None]:
    """Swap the generator and/or the reassembly functions the net calls, for the duration of one variant."""
    saved_fwd = A2UKernelGenerator.forward
    saved_up, saved_down = net_module.a2u_upsample, net_module.a2u_downsample
    try:
        if variant in ("per-sample-gen", "official-like"):
            A2UKernelGenerator.forward = per_sample_generator_forward
        if variant in ("unfold", "official-like"):
            net_module.a2u_upsample, net_module.a2u_downsample = unfold_upsample, unfold_downsample
        yield
    finally:
        A2UKernelGenerator.forward = saved_fwd
        net_module.a2u_upsample, net_module.a2u_downsample = saved_up, saved_down


# ------------------------------------------------------------------------------------------------ step
def synthetic_batch(batch: int, crop: int, device: torch.device, seed: int = 0):
    """Composited image + trimap input (§4.2 step 8 layout) and the §4.3 targets, from smooth random fields."""
    gen = torch.Generator().manual_seed(seed)
    low = torch.rand(batch, 1, crop // 32, crop // 32, generator=gen)
    alpha = F.interpolate(low, size=(crop, crop), mode="bilinear", align_corners=False).mul(3).sub(1).clamp(0, 1)
    fg = F.interpolate(torch.rand(batch, 3, crop // 16, crop // 16, generator=gen), size=(crop, crop), mode="bilinear")
    bg = F.interpolate(torch.rand(batch, 3, crop // 16, crop // 16, generator=gen), size=(crop, crop), mode="bilinear")
    image = fg * alpha + bg * (1 - alpha)
    unknown = ((alpha > 0.02) & (alpha < 0.98)).float()
    trimap = torch.where(alpha >= 0.98, 1.0, 0.0) + unknown * (128 / 255)
    mean = torch.tensor([0.485, 0.456, 0.406]).reshape(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).reshape(1, 3, 1, 1)
    inputs = torch.cat([(image - mean) / std, trimap], dim=1)
    target = {"alpha": alpha, "trimap": trimap, "fg": fg, "bg": bg, "image": image}
    return inputs.to(device), {k: v.to(device) for k, v in target.items()}


class Stepper:
    """One training configuration: net copy, Adam (fused on CUDA) with the §4.4 groups, optional bf16/compile."""

    def __init__(self, base: A2UMatting, device: torch.device, dtype: str, compile_net: bool,
                 channels_last: bool) -> None:
        self.net = copy.deepcopy(base).to(device).train()
        self.device = device
        self.autocast = dtype == "bf16"
        self.channels_last = channels_last
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.fwd: Callable[[torch.Tensor], torch.Tensor] = self.net
        if compile_net:
            self.fwd = torch.compile(self.net)
        self.opt = torch.optim.Adam(parameter_groups(self.net, 0.01), betas=(0.9, 0.999), eps=1e-8,
                                    **({"fused": True} if device.type == "cuda" else {"foreach": True}))

    def loss_and_backward(self, inputs: torch.Tensor, target: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        # the phase labels let benchmarks/profile_step.py split the step's time (free when nothing profiles)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast), \
                record_function(PHASE_PREFIX + "forward"):
            pred = self.fwd(inputs)
        with record_function(PHASE_PREFIX + "loss"):
            loss = matting_loss(pred.float(), target["alpha"], target["trimap"], target["fg"], target["bg"],
                                target["image"])
        with record_function(PHASE_PREFIX + "backward"):
            loss.backward()
        return pred

    def step(self, inputs: torch.Tensor, target: dict[str, torch.Tensor]) -> None:
        self.opt.zero_grad(set_to_none=True)
        self.loss_and_backward(inputs, target)
        with record_function(PHASE_PREFIX + "optimizer"):
            self.opt.step()


def seeded_forward_backward(stepper: Stepper, inputs, target) -> tuple[torch.Tensor, torch.Tensor]:
    """Output and the concatenated parameter gradients of one forward/backward from the initial weights.

    TF32 is off for the check (cuDNN convolutions use it by default on Ampere and later: fp32 variants that reorder
    work would differ at TF32 precision). Run in eval mode (BatchNorm with its running statistics, no dropout): the check compares the math of the
    swapped A2U pieces, and batch statistics of tiny batches/maps (the 1×1 ASPP image-pool BN) would amplify
    rounding differences by orders of magnitude and hide that comparison. Timing runs in train mode.
    """
    stepper.opt.zero_grad(set_to_none=True)
    stepper.net.eval()
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 here
    try:
        pred = stepper.loss_and_backward(inputs, target).detach().float()
    finally:
        stepper.net.train()
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
    grads = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).float().flatten()
                       for p in stepper.net.parameters()])
    return pred, grads


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    """Relative L2 error; NaN/inf anywhere gives inf so that a NaN can never pass."""
    if not torch.isfinite(got).all() or not torch.isfinite(want).all():
        return math.inf
    return ((got.double() - want.double()).norm() / want.double().norm().clamp_min(1e-30)).item()


# ------------------------------------------------------------------------------------------------ measurement
class PeakRSS:
    """Peak resident-set growth over a region, sampled by a thread (CPU runs; approximate to the sampling period)."""

    def __init__(self, period_s: float = 0.002) -> None:
        import psutil

        self.proc = psutil.Process()
        self.period = period_s
        self.peak = 0
        self.base = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(self.period)

    def __enter__(self) -> "PeakRSS":
        self.base = self.peak = self.proc.memory_info().rss
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()

    @property
    def grown_mib(self) -> float:
        return (self.peak - self.base) / 2 ** 20


def time_steps(stepper: Stepper, inputs, target, warmup: int, iters: int) -> tuple[float, float, float]:
    """(median wall ms per step, median process-CPU ms per step, peak MiB) over `iters` steps after `warmup`.

    The CPU time (`time.process_time`, all threads of this process) is what to compare on a shared CPU: wall
    time there mostly measures the other tenants. On CUDA it is the host time and is reported for completeness.

    CPU peak memory is the RSS growth during the first step (the one that allocates Adam state and every
    activation); `main` re-executes itself with MALLOC_MMAP_THRESHOLD_ set so that freed large tensors go back to
    the OS and each variant's growth is its own.
    """
    device = stepper.device
    cpu_peak = 0.0
    if device.type != "cuda":
        with PeakRSS() as rss:
            stepper.step(inputs, target)
        cpu_peak = rss.grown_mib
        warmup = max(0, warmup - 1)
    for _ in range(warmup):
        stepper.step(inputs, target)
    times: list[float] = []
    cpu_times: list[float] = []
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(iters)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(iters)]
        for i in range(iters):
            starts[i].record()
            stepper.step(inputs, target)
            ends[i].record()
        torch.cuda.synchronize(device)
        times = [s.elapsed_time(e) for s, e in zip(starts, ends)]
        cpu_times = [math.nan]
        peak = torch.cuda.max_memory_allocated(device) / 2 ** 20
    else:
        for _ in range(iters):
            t0, c0 = time.perf_counter(), time.process_time()
            stepper.step(inputs, target)
            times.append((time.perf_counter() - t0) * 1e3)
            cpu_times.append((time.process_time() - c0) * 1e3)
        peak = cpu_peak
    return statistics.median(times), statistics.median(cpu_times), peak


def run(args: argparse.Namespace) -> list[dict]:
    device = torch.device(args.device)
    torch.manual_seed(0)
    base = A2UMatting()
    rows: list[dict] = []
    for batch in args.batch:
        inputs, target = synthetic_batch(batch, args.crop, device)
        with ops_backend("reference"):
            ref = Stepper(base, device, "fp32", False, False)
            ref_out, ref_grad = seeded_forward_backward(ref, inputs, target)
            del ref
        for dtype in args.dtypes:
            for variant in args.variants:
                row = {"variant": variant, "batch": batch, "crop": args.crop, "dtype": dtype,
                       "compile": args.compile, "channels_last": args.channels_last}
                try:
                    if args.compile:  # a fresh Dynamo cache per row: each row is its own program, and the
                        torch._dynamo.reset()  # shared cache would hit the recompile limit and run later rows eagerly
                    with swapped(variant):
                        stepper = Stepper(base, device, dtype, args.compile, args.channels_last)
                        out, grad = seeded_forward_backward(stepper, inputs, target)
                        row["out_rel_err"] = relative_error(out, ref_out)
                        row["grad_rel_err"] = relative_error(grad, ref_grad)
                        row["correct"] = max(row["out_rel_err"], row["grad_rel_err"]) <= TOLERANCE[dtype]
                        ms, cpu_ms, peak = time_steps(stepper, inputs, target, args.warmup, args.iters)
                        del stepper
                    row.update(ms_per_step=ms, images_per_s=batch / ms * 1e3, cpu_ms_per_step=cpu_ms,
                               images_per_cpu_s=batch / cpu_ms * 1e3, peak_mib=peak)
                except Exception as exc:  # a failing variant is reported, the others still run
                    row["error"] = f"{type(exc).__name__}: {exc}"[:300]
                rows.append(row)
                print(json.dumps(row), flush=True)
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    return rows


def median_ms(fn: Callable[[], None], device: torch.device, iters: int) -> float:
    """Median milliseconds of `iters` calls: wall time between device syncs on CUDA, process-CPU time on CPU
    (robust to other tenants)."""
    clock = time.perf_counter if device.type == "cuda" else time.process_time
    times = []
    for _ in range(iters):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = clock()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append((clock() - t0) * 1e3)
    return statistics.median(times)


# (op, C, low-res side) at the training shapes (batch 8, crop 512); batch and sides shrink with --ops-scale on CPU
OPS_SHAPES = [("up", 256, 32), ("up", 128, 64), ("up", 64, 128), ("up", 64, 256),
              ("down", 64, 256), ("down", 64, 128), ("down", 128, 64), ("down", 256, 32)]


def run_ops(args: argparse.Namespace) -> list[dict]:
    """Reassembly fwd+bwd: `model.ops` (reference on CPU, fused on CUDA) vs plain unfold, same inputs.

    Times: `median_ms`.
    """
    device = torch.device(args.device)
    rows = []
    for op, c, side in OPS_SHAPES:
        side = max(4, side // args.ops_scale)
        k = 3 if op == "up" else 6
        n = args.ops_batch
        if op == "up":
            x = torch.randn(n, c, side, side, device=device)
            m = torch.rand(n, k * k, 2 * side, 2 * side, device=device).softmax(1)
            impls = {"model.ops": ops.a2u_upsample, "unfold": unfold_upsample}
        else:
            x = torch.randn(n, c, 2 * side, 2 * side, device=device)
            m = torch.rand(n, k * k, side, side, device=device).softmax(1)
            impls = {"model.ops": ops.a2u_downsample, "unfold": unfold_downsample}
        results = {}
        for name, fn in impls.items():
            xl, ml = x.clone().requires_grad_(), m.clone().requires_grad_()
            out = fn(xl, ml, k, 1, 2)
            upstream = torch.ones_like(out)
            out.backward(upstream)
            results[name] = (out.detach(), xl.grad, ml.grad)
            def fwd_bwd() -> None:
                xl.grad = ml.grad = None
                fn(xl, ml, k, 1, 2).backward(upstream)

            results[name + "_ms"] = median_ms(fwd_bwd, device, args.iters)
        err = max(relative_error(a, b) for a, b in zip(results["model.ops"], results["unfold"]))
        shape = (f"{n}×{c}×{side}² → {2 * side}²" if op == "up" else f"{n}×{c}×{2 * side}² → {side}²")
        row = {"op": op, "shape": shape, "ops_ms": results["model.ops_ms"], "unfold_ms": results["unfold_ms"],
               "rel_err": err, "correct": err <= 1e-5}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


# (channels, side of the input map) of the net's four kernel generators at crop 512 (sides ÷ --ops-scale on CPU)
GENERATOR_SHAPES = [(64, 512), (64, 256), (128, 128), (256, 64)]


def run_generator(args: argparse.Namespace) -> list[dict]:
    """Kernel generator fwd+bwd alone at the net's generator inputs: the batched one (`model.kernel_generator`)
    against the official per-sample loop's port, same weights and input, in fp32 and bf16 autocast, channels_last
    as in training when --channels-last. Times: `median_ms`."""
    device = torch.device(args.device)
    rows = []
    for c, side in GENERATOR_SHAPES:
        side = max(8, side // args.ops_scale)
        torch.manual_seed(0)
        gen = A2UKernelGenerator(c).to(device).train()
        x = torch.randn(args.batch[0], c, side, side, device=device)
        if args.channels_last:
            gen, x = gen.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
        for dtype in args.dtypes:
            results = {}
            for name, fwd in (("batched", A2UKernelGenerator.forward), ("per_sample", per_sample_generator_forward)):
                def call() -> tuple[torch.Tensor, torch.Tensor]:
                    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == "bf16"):
                        return fwd(gen, xl)

                xl = x.clone().requires_grad_()
                gen.zero_grad(set_to_none=True)
                down, up = call()
                (down.float().sum() + up.float().square().sum()).backward()
                results[name] = (down.detach().float(), up.detach().float(), xl.grad.float())
                def fwd_bwd() -> None:
                    xl.grad = None
                    gen.zero_grad(set_to_none=True)
                    down, up = call()
                    (down.float().sum() + up.float().square().sum()).backward()

                results[name + "_ms"] = median_ms(fwd_bwd, device, args.iters)
            err = max(relative_error(a, b) for a, b in zip(results["batched"], results["per_sample"]))
            row = {"generator": f"{args.batch[0]}×{c}×{side}²", "dtype": dtype,
                   "batched_ms": results["batched_ms"], "per_sample_ms": results["per_sample_ms"],
                   "speedup": results["per_sample_ms"] / results["batched_ms"], "rel_err": err,
                   "correct": err <= TOLERANCE[dtype]}
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def ops_markdown(rows: list[dict]) -> str:
    lines = ["| op, shape | model.ops fwd+bwd ms | unfold fwd+bwd ms | unfold / ops | rel err | ok |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['op']} {r['shape']} | {r['ops_ms']:.1f} | {r['unfold_ms']:.1f} | "
                     f"{r['unfold_ms'] / r['ops_ms']:.2f}× | {r['rel_err']:.1e} | {'yes' if r['correct'] else 'NO'} |")
    return "\n".join(lines)


def markdown(rows: list[dict]) -> str:
    lines = ["| variant | batch × crop | dtype | ms / step (wall) | images / s (wall) | CPU ms / step | "
             "images / CPU-s | peak MiB | out rel err | grad rel err | ok |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['variant']} | {r['batch']} × {r['crop']}² | {r['dtype']} | failed: {r['error']} "
                         "| | | | | | | no |")
            continue
        lines.append(f"| {r['variant']} | {r['batch']} × {r['crop']}² | {r['dtype']} | {r['ms_per_step']:.1f} | "
                     f"{r['images_per_s']:.2f} | {r['cpu_ms_per_step']:.0f} | {r['images_per_cpu_s']:.2f} | "
                     f"{r['peak_mib']:.0f} | {r['out_rel_err']:.1e} | {r['grad_rel_err']:.1e} | "
                     f"{'yes' if r['correct'] else 'NO'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    if argv is None and "MALLOC_MMAP_THRESHOLD_" not in os.environ:  # see time_steps: honest CPU peak memory
        os.environ["MALLOC_MMAP_THRESHOLD_"] = str(1 << 17)
        os.execv(sys.executable, [sys.executable, *sys.argv])
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, nargs="+", default=None, help="batch sizes (GPU default 8 16)")
    parser.add_argument("--crop", type=int, default=None, help="square crop (GPU default 512)")
    parser.add_argument("--cpu-small", action="store_true", help="CPU scale: batch 2 4, crop 128")
    parser.add_argument("--dtypes", nargs="+", choices=("fp32", "bf16"), default=["fp32", "bf16"])
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--compile", action="store_true", help="torch.compile the net (variants share the flag)")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--cudnn-benchmark", action="store_true",
                        help="torch.backends.cudnn.benchmark (training's perf.cudnn_benchmark; timed after --warmup)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--ops", action="store_true", help="only the reassembly ops vs plain unfold (fwd+bwd)")
    parser.add_argument("--generator", action="store_true",
                        help="only the kernel generator, batched vs the official per-sample loop (fwd+bwd; batch = "
                             "the first --batch, map sides ÷ --ops-scale)")
    parser.add_argument("--ops-batch", type=int, default=8)
    parser.add_argument("--ops-scale", type=int, default=1, help="divide the training-shape map sides by this")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    small = args.cpu_small or args.device == "cpu"
    args.batch = args.batch or ([2, 4] if small else [8, 16])
    args.crop = args.crop or (128 if small else 512)
    if args.crop % 16:
        parser.error("--crop must be a multiple of 16")
    card = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else platform.processor() or "cpu"
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"# bench_step: {card}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"ops backend {current_backend()}, cudnn.benchmark {args.cudnn_benchmark}, {stamp}", flush=True)
    if args.generator:
        rows = run_generator(args)
        print("| generator input | dtype | batched ms | per-sample ms | speed-up | rel err |\n|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['generator']} | {r['dtype']} | {r['batched_ms']:.2f} | {r['per_sample_ms']:.2f} | "
                  f"{r['speedup']:.1f}× | {r['rel_err']:.1e} |")
        return 0 if all(r["correct"] for r in rows) else 1
    if args.ops:
        rows = run_ops(args)
        print(ops_markdown(rows))
        return 0 if all(r["correct"] for r in rows) else 1
    rows = run(args)
    print(markdown(rows))
    return 0 if all(r.get("correct") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
