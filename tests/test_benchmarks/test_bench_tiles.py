"""benchmarks/bench_tiles.py, the GPU check's launch-tile sweep, run through Triton's interpreter on the CPU: every
tile of every kernel runs and matches the default tile, and the per-kernel summary names a best tile."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_tiny_sweep_in_the_interpreter_covers_every_kernel_and_tile():
    pytest.importorskip("triton")
    env = dict(os.environ, TRITON_INTERPRET="1")
    proc = subprocess.run([sys.executable, "benchmarks/bench_tiles.py", "--device", "cpu", "--tiny"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    per_shape = [r for r in rows if "kernel" in r]
    from model.fused_ops import CHANNEL_TILES, KERNELS, TAP_TILES

    assert {r["kernel"] for r in per_shape} == set(KERNELS)
    for r in per_shape:
        assert len(r["ms"]) == len(TAP_TILES if r["kernel"].endswith("grad_m") else CHANNEL_TILES)
        assert r["mismatched"] == [] and r["best_ms"] <= r["default_ms"]
    # the table to paste into model/fused_ops.py names a candidate tile for every kernel
    from model.fused_ops import LaunchTile

    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("DEFAULT_TILES = "))
    table = eval(line.split("=", 1)[1], {"LaunchTile": LaunchTile})  # noqa: S307 - our own output
    assert set(table) == set(KERNELS)
    for kernel, tile in table.items():
        assert tile in (TAP_TILES if kernel.endswith("grad_m") else CHANNEL_TILES)
    summary = rows[-1]
    assert set(summary["per_kernel"]) == set(KERNELS)
    assert summary["total_best_ms"] <= summary["total_default_ms"]


def test_a_sweep_cut_short_by_its_budget_still_prints_a_whole_table():
    """Shapes left unmeasured keep their kernels' current tiles in the printed table (pasting it loses none)."""
    pytest.importorskip("triton")
    env = dict(os.environ, TRITON_INTERPRET="1")
    proc = subprocess.run([sys.executable, "benchmarks/bench_tiles.py", "--device", "cpu", "--tiny", "--budget-s",
                           "0.5"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "budget of 0 s spent" in proc.stdout
    from model.fused_ops import DEFAULT_TILES, KERNELS, LaunchTile

    measured = {json.loads(ln)["kernel"] for ln in proc.stdout.splitlines() if ln.startswith('{"kernel"')}
    assert measured == {"up_fwd", "up_grad_x", "up_grad_m"}
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("DEFAULT_TILES = "))
    table = eval(line.split("=", 1)[1], {"LaunchTile": LaunchTile})  # noqa: S307 - our own output
    assert set(table) == set(KERNELS)
    assert all(table[k] == DEFAULT_TILES[k] for k in KERNELS if k not in measured)
