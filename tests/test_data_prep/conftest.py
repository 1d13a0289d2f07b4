"""Helpers for data_prep tests: small raw fg/alpha/bg folders made from the synthetic generator."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_prep.synthetic import make_background, make_foreground

REPO_ROOT = Path(__file__).resolve().parents[2]


def make_raw(root: Path, n_fg: int = 6, n_bg: int = 4, size: int = 64, seed: int = 7) -> dict[str, Path]:
    """root/{fg,alpha,bg}: fg PNG/JPEG alternating, 8-bit L alphas, JPEG backgrounds."""
    dirs = {d: root / d for d in ("fg", "alpha", "bg")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    for i in range(n_fg):
        fg, alpha, _ = make_foreground(seed, i, size)
        Image.fromarray(fg).save(dirs["fg"] / (f"obj{i:02d}.jpg" if i % 2 else f"obj{i:02d}.png"))
        Image.fromarray(alpha).save(dirs["alpha"] / f"obj{i:02d}.png")
    for i in range(n_bg):
        Image.fromarray(make_background(seed, i, size + 16)).save(dirs["bg"] / f"bg{i:02d}.jpg")
    return dirs


def run_cli(*args: str, check: bool = False, timeout: float = 120) -> subprocess.CompletedProcess:
    """`python -m data_prep ...` in a subprocess, as a user runs it."""
    proc = subprocess.run([sys.executable, "-m", "data_prep", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"data_prep {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def counts(out: Path) -> dict[str, int]:
    c: dict[str, int] = {}
    for s in manifest(out)["shards"]:
        c[s["kind"]] = c.get(s["kind"], 0) + s["samples"]
    return c


@pytest.fixture()
def raw(tmp_path: Path) -> dict[str, Path]:
    return make_raw(tmp_path / "raw")


def as_array(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))
