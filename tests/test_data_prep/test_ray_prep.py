"""`--ray`: preparation on a two-node Ray cluster on this machine (ray.cluster_utils.Cluster, one CPU per node,
127.0.0.1) writes the same bytes as the local process pool (every shard and index file, the manifest apart from its
creation time), names a bad input file exactly as the local run does, and resumes a partly written directory."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from data_prep.cli import main
from data_prep.verify import verify_dataset

from .conftest import REPO_ROOT
from .test_layouts import _bgs, _write_pairs

pytestmark = pytest.mark.slow


def _local(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """The local process-pool mode in its own process (a fork of this one would inherit the Ray node's handlers)."""
    return subprocess.run([sys.executable, "-m", "data_prep", *args, "--workers", "2"], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})


def _digests(out: Path) -> dict[str, str]:
    """sha256 of every file in a dataset directory; the manifest's without its creation time."""
    found = {}
    for p in sorted(out.iterdir()):
        if p.name == "manifest.json":
            doc = json.loads(p.read_text())
            assert doc.pop("created")
            data = json.dumps(doc, sort_keys=True).encode()
        else:
            data = p.read_bytes()
        found[p.name] = hashlib.sha256(data).hexdigest()
    return found


def _nodes_used(caplog: pytest.LogCaptureFixture) -> int:
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("encoded on ")]
    assert len(lines) == 1, lines
    return int(lines[0].split()[2])


def test_synthetic_same_bytes_on_two_nodes_and_resume(two_node_ray: str, tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture, capsys) -> None:
    caplog.set_level(logging.INFO, logger="data_prep")
    args = ["synthetic", "--count", "6", "--size", "64", "--seed", "3", "--train-composites", "1",
            "--shard-size", "16KB"]
    assert _local([*args, "--out", str(tmp_path / "local")], tmp_path).returncode == 0
    assert main([*args, "--out", str(tmp_path / "ray"), "--ray", two_node_ray]) == 0
    local = _digests(tmp_path / "local")
    assert sum(n.endswith(".tar") for n in local) >= 6 and sum(n.endswith(".idx") for n in local) >= 6
    assert _digests(tmp_path / "ray") == local
    assert _nodes_used(caplog) == 2
    assert verify_dataset(tmp_path / "ray") == []

    # resume: a lost middle shard is rewritten from there on, the shards before it are kept as they are
    resumed = tmp_path / "resumed"
    shutil.copytree(tmp_path / "local", resumed)
    kept_mtime = (resumed / "fg-000000.tar").stat().st_mtime_ns
    (resumed / "fg-000001.tar").unlink()
    capsys.readouterr()
    assert main([*args, "--out", str(resumed), "--ray", two_node_ray]) == 0
    summary = capsys.readouterr().out
    shards = sum(n.endswith(".tar") for n in local)
    rewritten = sum(n.startswith("fg-") and n.endswith(".tar") for n in local) - 1
    assert f"{rewritten} shards written, {shards - rewritten} kept from an earlier run" in summary, summary
    assert (resumed / "fg-000000.tar").stat().st_mtime_ns == kept_mtime
    assert _digests(resumed) == local


def test_layout_bad_file_named_as_locally(two_node_ray: str, tmp_path: Path, monkeypatch, capsys) -> None:
    """ppm100 (image + alpha: foreground estimation runs on the cluster), relative input paths, one corrupt photo."""
    monkeypatch.chdir(tmp_path)
    _write_pairs(Path("ppm/image"), Path("ppm/matte"), ["p1", "p2", "p3", "p4", "p5", "p6"], photo=True, seed=4)
    _bgs(Path("bgs"))
    bad = Path("ppm/image/p1.png")
    bad.write_bytes(bad.read_bytes()[:200])
    assert Image.open(bad).size  # the header still reads: only decoding finds the problem
    args = ["ppm100", "--root", "ppm", "--bg", "bgs", "--test-count", "1", "--val-count", "1",
            "--shard-size", "8KB"]

    local = _local([*args, "--out", "stop-local"], tmp_path)
    assert local.returncode == 2
    capsys.readouterr()
    assert main([*args, "--out", "stop-ray", "--ray", two_node_ray]) == 2
    on_ray = capsys.readouterr().err.splitlines()[-1]
    assert on_ray == local.stderr.splitlines()[-1]
    assert on_ray.startswith(f"error: bad input: {bad}: ")
    for out in ("stop-local", "stop-ray"):
        assert not Path(out, "manifest.json").exists() and not list(Path(out).glob(".*.partial"))

    assert _local([*args, "--out", "skip-local", "--skip-bad"], tmp_path).returncode == 0
    assert main([*args, "--out", "skip-ray", "--ray", two_node_ray, "--skip-bad"]) == 0
    assert _digests(Path("skip-ray")) == _digests(Path("skip-local"))
    skipped = json.loads(Path("skip-ray/manifest.json").read_text())["skipped"]
    assert [s["path"] for s in skipped] == [str(bad)]
