"""Where CPU inference time goes: per layer (the net's top-level stages) and per operator, for PyTorch eager as
trained, the fast CPU path, and onnxruntime on an exported file.

    .venv/bin/python benchmarks/profile_inference.py --size 272 256 --onnx a2u.onnx --repeats 5

PyTorch per layer: forward hooks on the top-level children of the net (the fast path's inference copy for ``fast``),
mean ms per forward. PyTorch per operator: ``torch.profiler`` self CPU time, mean ms per forward. onnxruntime per
operator: its built-in profiler (node kernel time summed per op type), mean ms per run. The net is the released
configuration with random weights (seed 0; timings do not depend on the weights) unless ``--model`` names one.
"""
from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.bench_inference import _load_model  # noqa: E402
from model.cpu_inference import cpu_inference, inference_copy  # noqa: E402


def layer_times(net: torch.nn.Module, timed: torch.nn.Module, x: torch.Tensor, repeats: int) -> dict[str, float]:
    """Mean ms per forward of each top-level child of ``timed`` while ``net(x)`` runs."""
    totals: dict[str, float] = collections.defaultdict(float)
    starts: dict[str, float] = {}
    handles = []
    for name, child in timed.named_children():
        handles.append(child.register_forward_pre_hook(lambda m, i, n=name: starts.__setitem__(n, time.perf_counter())))
        handles.append(child.register_forward_hook(
            lambda m, i, o, n=name: totals.__setitem__(n, totals[n] + time.perf_counter() - starts[n])))
    with torch.no_grad():
        net(x)
        totals.clear()
        start = time.perf_counter()
        for _ in range(repeats):
            net(x)
        wall = time.perf_counter() - start
    for handle in handles:
        handle.remove()
    result = {name: 1000 * t / repeats for name, t in sorted(totals.items(), key=lambda kv: -kv[1])}
    result["(whole forward)"] = 1000 * wall / repeats
    return result


def op_times(net: torch.nn.Module, x: torch.Tensor, repeats: int, top: int) -> list[tuple[str, float, int]]:
    """(op, mean self-CPU ms per forward, calls per forward) of the ``top`` most expensive operators."""
    from torch.profiler import ProfilerActivity, profile

    with torch.no_grad():
        net(x)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(repeats):
                net(x)
    rows = [(e.key, e.self_cpu_time_total / 1000 / repeats, e.count // repeats) for e in prof.key_averages()]
    return sorted(rows, key=lambda r: -r[1])[:top]


def ort_op_times(onnx_file: str, x: np.ndarray, repeats: int, threads: int, top: int):
    """(op type, mean ms per run, nodes) from onnxruntime's profiler, and the mean wall ms per run."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    options.enable_profiling = True
    options.profile_file_prefix = str(Path(tempfile.mkdtemp()) / "ort")
    session, wall = _timed_session(onnx_file, options, x, repeats)
    events = json.loads(Path(session.end_profiling()).read_text())
    spent: dict[str, float] = collections.Counter()
    nodes: dict[str, int] = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            spent[event["args"]["op_name"]] += event["dur"]
            nodes[event["args"]["op_name"]] += 1
    runs = repeats + 1
    rows = [(op, us / 1000 / runs, nodes[op] // runs) for op, us in spent.most_common(top)]
    return rows, wall


def _timed_session(onnx_file: str, options, x: np.ndarray, repeats: int):
    """(session, mean wall ms per run over `repeats` runs after one warm-up run) of a CPU onnxruntime session."""
    import onnxruntime as ort

    session = ort.InferenceSession(onnx_file, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    session.run(None, {name: x})
    start = time.perf_counter()
    for _ in range(repeats):
        session.run(None, {name: x})
    return session, 1000 * (time.perf_counter() - start) / repeats


def ort_settings(onnx_file: str, x: np.ndarray, repeats: int) -> list[tuple[str, int, float]]:
    """(graph optimisation level, intra-op threads, mean wall ms per run) over the levels and 1–2 threads."""
    import onnxruntime as ort

    levels = {"disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
              "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
              "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
              "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
    rows = []
    for label, level in levels.items():
        for threads in (1, 2):
            options = ort.SessionOptions()
            options.log_severity_level = 3
            options.graph_optimization_level = level
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            rows.append((label, threads, _timed_session(onnx_file, options, x, repeats)[1]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, nargs=2, default=[272, 256], metavar=("H", "W"))
    parser.add_argument("--model", default="random")
    parser.add_argument("--onnx", default=None, help="an exported ONNX file to profile under onnxruntime")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--ort-settings", action="store_true", help="also time every optimisation level × 1/2 threads")
    parser.add_argument("--skip-torch", action="store_true", help="profile only the ONNX file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    net = _load_model(args.model)
    x = torch.randn(1, 4, *args.size, generator=torch.Generator().manual_seed(0))
    print(f"# torch {torch.__version__}, {args.threads} threads, input {tuple(x.shape)}, model {args.model}")
    for mode in () if args.skip_torch else ("reference", "fast"):
        with cpu_inference(mode):
            timed = inference_copy(net) if mode == "fast" else net
            layers = layer_times(net, timed, x, args.repeats)
            ops = op_times(net, x, args.repeats, args.top)
        print(f"\n## {mode}: per layer, ms per forward\n\n| layer | ms |\n|---|---|")
        for name, ms in layers.items():
            print(f"| {name} | {ms:.1f} |")
        print(f"\n## {mode}: per operator (self CPU), ms per forward\n\n| operator | ms | calls |\n|---|---|---|")
        for name, ms, calls in ops:
            print(f"| {name} | {ms:.1f} | {calls} |")
    if args.onnx:
        rows, wall = ort_op_times(args.onnx, x.numpy(), args.repeats, args.threads, args.top)
        print(f"\n## onnxruntime ({Path(args.onnx).name}): per operator type, ms per run (wall {wall:.1f} ms per run)"
              "\n\n| op type | ms | nodes |\n|---|---|---|")
        for name, ms, count in rows:
            print(f"| {name} | {ms:.1f} | {count} |")
        if args.ort_settings:
            print("\n## onnxruntime: optimisation level and threads, wall ms per run\n\n| level | threads | ms |\n"
                  "|---|---|---|")
            for label, threads, ms in ort_settings(args.onnx, x.numpy(), args.repeats):
                print(f"| {label} | {threads} | {ms:.0f} |")


if __name__ == "__main__":
    main()
