"""Export cost and inference speed of the A2U net as ONNX (onnxruntime, CPU) and TorchScript against eager PyTorch.

Prints the export times, the max abs error of each export against eager PyTorch, and the median latency of one
forward pass at the given size. Usage: `python benchmarks/bench_export.py --size 320 --repeats 3`.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jobs.export import _export_onnx, _export_torchscript, _onnx_runner, _torchscript_runner  # noqa: E402
from model.net import A2UMatting  # noqa: E402


def _median_seconds(fn, x: np.ndarray, repeats: int) -> float:
    fn(x)  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=int, default=320, help="H = W of the timed input (multiple of 16)")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.manual_seed(0)
    net = A2UMatting().eval()
    x = torch.randn(args.batch, 4, args.size, args.size).numpy()
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path, ts_path = Path(tmp) / "a2u.onnx", Path(tmp) / "a2u.pt"
        t = time.perf_counter()
        _export_onnx(net, onnx_path)
        onnx_export = time.perf_counter() - t
        t = time.perf_counter()
        _export_torchscript(net, ts_path)
        ts_export = time.perf_counter() - t
        runners = {"eager": lambda a: _eager(net, a), "torchscript": _torchscript_runner(ts_path),
                   "onnxruntime": _onnx_runner(onnx_path)}
        want = runners["eager"](x)
        print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, input {tuple(x.shape)}")
        print(f"export: onnx {onnx_export:.1f} s ({onnx_path.stat().st_size / 2**20:.1f} MiB), "
              f"torchscript {ts_export:.1f} s ({ts_path.stat().st_size / 2**20:.1f} MiB)")
        for name, run in runners.items():
            err = float(np.abs(run(x) - want).max())
            print(f"{name:12s} median {_median_seconds(run, x, args.repeats) * 1000:8.0f} ms   max abs err {err:.2g}")


def _eager(net: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return net(torch.from_numpy(x)).numpy()


if __name__ == "__main__":
    main()
