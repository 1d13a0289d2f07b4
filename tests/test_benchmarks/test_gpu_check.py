"""benchmarks/gpu_check.py on a machine without CUDA: the dry run skips every CUDA step with a message and passes."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_dry_run_without_cuda_skips_every_cuda_step(tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA machine runs the real check")
    proc = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--out", str(tmp_path), "--deadline", "200"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    steps = {s["step"]: s["status"] for s in summary["steps"]}
    from benchmarks.gpu_check import STEPS

    assert list(steps) == [name for name, _, _ in STEPS]
    assert all(status.startswith("skipped: no CUDA device") for status in steps.values()), steps
    assert (tmp_path / "summary.md").is_file() and "| profile |" in (tmp_path / "summary.md").read_text()
    assert "===== env" in (tmp_path / "log.txt").read_text()
