"""Benchmark of the A2U reassembly operators beside a plain unfold+einsum formulation.

Shapes: the net's training shapes (batch 8, crop 512, up k = 3, down k = 6, G = 1). On CPU they are scaled down
(``--cpu-scale``: batch 8 → 1 and each side ÷ the factor) so a 2-core run finishes in minutes. Prints forward and
forward+backward time (median) and peak extra memory per case: CUDA via max_memory_allocated; CPU via the peak RSS
growth of a forked child process that runs one forward+backward. CUDA runs fp32 and bf16 when a GPU is present.

Usage: python benchmarks/bench_ops.py [--cpu-scale 4] [--repeats 5] [--threads 2] [--skip-cpu]
On a shared machine keep --threads low and expect noisy CPU numbers.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from model.ops import (a2u_downsample, a2u_upsample, reference_downsample, reference_upsample,  # noqa: E402
                       unfold_downsample, unfold_upsample)

# (op, N, C, low-res side for up / high-res side for down)
SHAPES = [("up", 8, 256, 32), ("up", 8, 128, 64), ("up", 8, 64, 128), ("up", 8, 64, 256),
          ("down", 8, 64, 512), ("down", 8, 64, 256), ("down", 8, 128, 128), ("down", 8, 256, 64)]


def make_inputs(op: str, n: int, c: int, side: int, device: str, dtype: torch.dtype):
    if op == "up":
        x = torch.randn(n, c, side, side, device=device, dtype=dtype)
        m = torch.rand(n, 9, 2 * side, 2 * side, device=device, dtype=dtype)
        return x, m, 3
    x = torch.randn(n, c, side, side, device=device, dtype=dtype)
    m = torch.rand(n, 36, side // 2, side // 2, device=device, dtype=dtype)
    return x, m, 6


def implementations(op: str):
    # on CUDA `model.ops` dispatches to the fused Triton kernels; the tap loop is then called directly
    fused = torch.cuda.is_available()
    if op == "up":
        return {"a2u (tap loop)": reference_upsample, **({"a2u fused": a2u_upsample} if fused else {}),
                "unfold+einsum": unfold_upsample}
    return {"a2u (tap loop)": reference_downsample, **({"a2u fused": a2u_downsample} if fused else {}),
            "unfold+einsum": unfold_downsample}


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_call(fn, device: str, repeats: int) -> float:
    fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def cpu_peak_mib(op: str, n: int, c: int, side: int, impl_name: str, threads: int) -> float:
    """Peak RSS growth (MiB) of one forward+backward, measured in a fresh child process (fork would deadlock
    OpenMP) so that earlier peaks do not hide it."""
    cmd = [sys.executable, __file__, "--child", op, str(n), str(c), str(side), impl_name, "--threads", str(threads)]
    result = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def child_main(op: str, n: int, c: int, side: int, impl_name: str) -> None:
    x, m, k = make_inputs(op, n, c, side, "cpu", torch.float32)
    impl = implementations(op)[impl_name]
    xs, ms = x.detach().requires_grad_(), m.detach().requires_grad_()
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS counter (VmHWM) to the current RSS
    before = _status_kib("VmRSS")
    impl(xs, ms, k).sum().backward()
    print((_status_kib("VmHWM") - before) / 1024)


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} missing from /proc/self/status")


def run_case(op, n, c, side, device, dtype, repeats, threads):
    x, m, k = make_inputs(op, n, c, side, device, dtype)
    rows = []
    for name, impl in implementations(op).items():
        def fwd():
            with torch.no_grad():
                impl(x, m, k)

        def fwd_bwd():
            xs, ms = x.detach().requires_grad_(), m.detach().requires_grad_()
            impl(xs, ms, k).float().sum().backward()

        t_f = time_call(fwd, device, repeats)
        t_fb = time_call(fwd_bwd, device, repeats)
        if device == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            fwd_bwd()
            torch.cuda.synchronize()
            peak = (torch.cuda.max_memory_allocated() - base) / 2 ** 20
        else:
            peak = cpu_peak_mib(op, n, c, side, name, threads)
        rows.append((name, t_f, t_fb, peak))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-scale", type=int, default=4, help="divide each side by this on CPU (batch 8 → 1)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-cpu", action="store_true")
    parser.add_argument("--child", nargs=5, metavar=("OP", "N", "C", "SIDE", "IMPL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        op, n, c, side, impl_name = args.child
        child_main(op, int(n), int(c), int(side), impl_name)
        return
    print(f"torch {torch.__version__}, threads {args.threads}, cuda {torch.cuda.is_available()}")
    configs = [] if args.skip_cpu else [("cpu", torch.float32)]
    if torch.cuda.is_available():
        configs += [("cuda", torch.float32), ("cuda", torch.bfloat16)]
        print("GPU:", torch.cuda.get_device_name())
    header = f"{'device':6} {'dtype':9} {'op':5} {'shape':22} {'impl':16} {'fwd ms':>9} {'fwd+bwd ms':>11} {'peak MiB':>9}"
    print(header)
    for device, dtype in configs:
        for op, n, c, side in SHAPES:
            if device == "cpu":
                n, side = 1, side // args.cpu_scale
            out_side = side * 2 if op == "up" else side // 2
            shape = f"{n}x{c}x{side}²→{out_side}²"
            for name, t_f, t_fb, peak in run_case(op, n, c, side, device, dtype, args.repeats, args.threads):
                print(f"{device:6} {str(dtype)[6:]:9} {op:5} {shape:22} {name:16} {t_f:9.2f} {t_fb:11.2f} {peak:9.1f}",
                      flush=True)


if __name__ == "__main__":
    main()
