"""Training-step benchmark of the A2U matting net: forward + loss + backward + Adam, images/s and peak memory.

CPU (always): batch × crop 4×128² and 8×128²; CUDA (when present): 8×512² fp32 and bf16 autocast.
Peak memory: CUDA max_memory_allocated; CPU the peak RSS (VmHWM, reset before timing) minus the RSS before.
Usage: python benchmarks/bench_net.py [--steps 3] [--threads 2] [--upsampler a2u]
On a shared machine keep --threads low and expect noisy CPU numbers.
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from model.losses import matting_loss  # noqa: E402
from model.net import A2UMatting, parameter_groups  # noqa: E402


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(field)


def batch(n: int, size: int, device: str):
    image = torch.rand(n, 3, size, size, device=device)
    trimap = torch.randint(0, 3, (n, 1, size, size), device=device).float() * 127.5
    trimap = torch.where(trimap == 127.5, torch.full_like(trimap, 128.0), trimap) / 255.0
    x = torch.cat([image, trimap], dim=1)
    alpha = torch.rand(n, 1, size, size, device=device)
    fg, bg = torch.rand(n, 3, size, size, device=device), torch.rand(n, 3, size, size, device=device)
    return x, alpha, trimap, fg, bg, alpha * fg + (1 - alpha) * bg


def bench(n: int, size: int, device: str, steps: int, upsampler: str, bf16: bool) -> tuple[float, float]:
    torch.manual_seed(0)
    net = A2UMatting(upsampler=upsampler).to(device).train()
    optimiser = torch.optim.Adam(parameter_groups(net, 0.01), betas=(0.9, 0.999), eps=1e-8)
    x, alpha, trimap, fg, bg, image = batch(n, size, device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    def step() -> None:
        optimiser.zero_grad(set_to_none=True)
        with autocast:
            pred = net(x)
        loss = matting_loss(pred.float(), alpha, trimap, fg, bg, image)
        loss.backward()
        optimiser.step()

    step()  # warm-up (allocates Adam state)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    else:
        Path("/proc/self/clear_refs").write_text("5")
        rss_before = _status_kib("VmRSS")
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2 ** 30
    else:
        peak = (_status_kib("VmHWM") - rss_before) / 2 ** 20
    return statistics.median(times) * 1e3, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--upsampler", default="a2u")
    parser.add_argument("--skip-cpu", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {args.threads}, upsampler {args.upsampler}")
    cases = [] if args.skip_cpu else [("cpu", 4, 128, False), ("cpu", 8, 128, False)]
    if torch.cuda.is_available():
        print("GPU:", torch.cuda.get_device_name())
        cases += [("cuda", 8, 512, False), ("cuda", 8, 512, True)]
    print(f"{'device':6} {'batch×crop':12} {'dtype':6} {'ms/step':>9} {'images/s':>9} {'peak GiB':>9}")
    for device, n, size, bf16 in cases:
        ms, peak = bench(n, size, device, args.steps, args.upsampler, bf16)
        extra = " (extra RSS)" if device == "cpu" else ""
        print(f"{device:6} {f'{n}×{size}²':12} {'bf16' if bf16 else 'fp32':6} {ms:9.1f} {n / ms * 1e3:9.2f} "
              f"{peak:9.2f}{extra}", flush=True)


if __name__ == "__main__":
    main()
