"""Static int8 quantisation of the exported ONNX model: its speed and what it costs in accuracy on real-dev.

Not a shipped path (the exported file stays float32): this measures whether int8 would pay on CPU.

    .venv/bin/python -m jobs export --format onnx --out /tmp/a2u.onnx          # or bench_inference.py's export
    .venv/bin/python benchmarks/bench_int8.py /tmp/a2u.onnx --threads 2

The convolutions with fixed weights are quantised (QDQ, int8 weights, uint8 activations) with activation ranges
calibrated on synthetic composites from the project's generator (never on real-dev); the kernel generators'
per-sample convolutions, whose weights are computed from the input, stay float32. Both files then run over the
real-dev photographs (read as `jobs evaluate` reads them) through `model.inference.predict_raw`, alternating file by
file per image; printed: seconds per image (median of the rounds), max |int8 − float32| of the raw output, and the
official SAD of each against the ground truth.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_inference import REPO_ROOT, _OnnxNet  # noqa: E402


def calibration_inputs(count: int, size: int, seed: int) -> list[np.ndarray]:
    """Net inputs (1×4×H×W) of `count` synthetic composites with 10-px unknown bands."""
    from data_prep.compositing import composite, fit_background
    from data_prep.synthetic import make_background, make_foreground
    from data_prep.trimaps import trimap_from_alpha
    from model.inference import prepare_input

    inputs = []
    for index in range(count):
        fg, alpha, _ = make_foreground(seed, index, size)
        bg = fit_background(make_background(seed, index, size), *alpha.shape)
        image = composite(fg, alpha, bg)
        inputs.append(prepare_input(image, trimap_from_alpha(alpha, 10).trimap).numpy())
    return inputs


def quantise(fp32: Path, out: Path, inputs: list[np.ndarray]) -> None:
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    graph = onnx.load(str(fp32)).graph
    fixed = {init.name for init in graph.initializer}
    dynamic = [n.name for n in graph.node if n.op_type == "Conv" and n.input[1] not in fixed]
    name = graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter({name: x} for x in inputs)

        def get_next(self):
            return next(self.items, None)

    quantize_static(str(fp32), str(out), Reader(), quant_format=QuantFormat.QDQ, op_types_to_quantize=["Conv"],
                    nodes_to_exclude=dynamic, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("onnx", type=Path, help="an exported float32 ONNX file")
    parser.add_argument("--out", type=Path, default=None, help="int8 file (default: next to the input)")
    parser.add_argument("--calibration", type=int, default=16, help="synthetic composites for the ranges")
    parser.add_argument("--size", type=int, default=320, help="long side of the calibration composites")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    from jobs.evaluate import EvalSample, open_dataset
    from model.inference import alpha_from_raw, predict_raw
    from model.metrics import sad

    out = args.out or args.onnx.with_name(args.onnx.stem + "-int8.onnx")
    start = time.perf_counter()
    quantise(args.onnx, out, calibration_inputs(args.calibration, args.size, seed=11))
    print(f"# quantised in {time.perf_counter() - start:.1f} s: {out} ({out.stat().st_size / 2**20:.1f} MiB, "
          f"float32 {args.onnx.stat().st_size / 2**20:.1f} MiB)")
    nets = {"float32": _OnnxNet(str(args.onnx), args.threads), "int8": _OnnxNet(str(out), args.threads)}
    samples, _, _ = open_dataset(str(REPO_ROOT / "datasets" / "real-dev"))
    pairs = [s for s in samples if isinstance(s, EvalSample)]
    for net in nets.values():
        predict_raw(net, pairs[0].image, pairs[0].trimap)  # warm-up
    seconds = {name: [] for name in nets}
    outputs: dict[str, dict[str, np.ndarray]] = {name: {} for name in nets}
    for round_index in range(args.rounds):
        spent = dict.fromkeys(nets, 0.0)
        for i, s in enumerate(pairs):
            order = list(nets) if (i + round_index) % 2 == 0 else list(reversed(nets))
            for name in order:
                t0 = time.perf_counter()
                outputs[name][s.key] = predict_raw(nets[name], s.image, s.trimap)
                spent[name] += time.perf_counter() - t0
        for name in nets:
            seconds[name].append(spent[name] / len(pairs))
    print("| file | s / image | max abs diff vs float32 (raw) | real-dev SAD |")
    print("|---|---|---|---|")
    for name in nets:
        diff = max(float(np.abs(outputs[name][k] - outputs["float32"][k]).max()) for k in outputs[name])
        scores = [sad(alpha_from_raw(outputs[name][s.key], s.trimap), s.alpha, s.trimap) for s in pairs]
        print(f"| {name} | {statistics.median(seconds[name]):.3f} | {diff:.3g} | {np.mean(scores):.3f} |")


if __name__ == "__main__":
    main()
