"""benchmarks/bench_step.py's operator and generator modes on the CPU at small sizes: the GPU check runs them on the
card, so they must run and agree with their baselines here first."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def _rows(args: list[str]) -> list[dict]:
    proc = subprocess.run([sys.executable, "benchmarks/bench_step.py", "--device", "cpu", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def test_generator_mode_compares_batched_and_per_sample_generators():
    rows = _rows(["--generator", "--batch", "2", "--ops-scale", "16", "--iters", "1", "--dtypes", "fp32", "bf16"])
    assert [r["generator"] for r in rows[::2]] == ["2×64×32²", "2×64×16²", "2×128×8²", "2×256×8²"]
    assert [r["dtype"] for r in rows[:2]] == ["fp32", "bf16"]
    assert all(r["correct"] and r["batched_ms"] > 0 and r["per_sample_ms"] > 0 for r in rows)
    assert max(r["rel_err"] for r in rows if r["dtype"] == "fp32") < 1e-4


def test_ops_mode_compares_the_operators_with_unfold():
    rows = _rows(["--ops", "--ops-batch", "1", "--ops-scale", "16", "--iters", "1"])
    assert len(rows) == 8 and all(r["correct"] for r in rows)
