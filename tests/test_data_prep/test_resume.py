"""Interrupted runs and re-runs: kill `folders` mid-way, re-run, verify; nothing rewritten needlessly."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from data_prep.cli import main
from data_prep.reader import iter_samples
from data_prep.shard_writer import index_lines
from data_prep.verify import verify_dataset

from .conftest import REPO_ROOT, counts, make_raw, manifest, run_cli


@pytest.fixture(scope="module")
def big_raw(tmp_path_factory) -> dict[str, Path]:
    return make_raw(tmp_path_factory.mktemp("big") / "raw", n_fg=16, n_bg=4, size=160)


def _args(raw: dict[str, Path], out: Path) -> list[str]:
    return ["folders", "--fg", str(raw["fg"]), "--alpha", str(raw["alpha"]), "--bg", str(raw["bg"]),
            "--out", str(out), "--train-composites", "4", "--shard-size", "24KB", "--workers", "1"]


def _shas(out: Path) -> dict[str, str]:
    return {s["name"]: s["sha256"] for s in manifest(out)["shards"]}


@pytest.fixture(scope="module")
def clean_run(big_raw, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("clean") / "out"
    run_cli(*_args(big_raw, out), check=True)
    return out


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_kill_mid_run_then_resume(sig, big_raw, clean_run, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "data_prep", *_args(big_raw, out)], cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while not list(out.glob("train-*.tar")) and time.time() < deadline:  # fg and bg done, train under way
        time.sleep(0.005)
    assert proc.poll() is None, "the run finished before it could be interrupted"
    os.kill(proc.pid, sig)
    proc.communicate(timeout=30)
    assert proc.returncode != 0
    assert not (out / "manifest.json").exists()
    problems = verify_dataset(out)
    assert problems and "no manifest.json" in problems[0][1]
    done_before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.tar")}
    assert done_before
    for tar in out.glob("*.tar"):  # whatever a reader globbing *.tar finds is a complete, indexed shard
        assert tar.with_suffix(".idx").read_text().splitlines() == index_lines(tar)
        assert sum(1 for _ in iter_samples(tar)) >= 1

    res = run_cli(*_args(big_raw, out), check=True)
    assert "kept from an earlier run" in res.stdout and " 0 kept" not in res.stdout, res.stdout
    assert verify_dataset(out) == []
    assert counts(out) == {"fg": 16, "bg": 4, "train": 64}
    assert _shas(out) == _shas(clean_run)  # resumed output is identical to an uninterrupted run
    kept = [n for n, t in done_before.items() if (out / n).stat().st_mtime_ns == t]
    assert len(kept) >= len(done_before) - 1  # at most the shard being journaled at the kill is redone
    assert not list(out.glob(".*"))  # no temp files, no journal


def test_rerun_rewrites_nothing(big_raw, clean_run):
    before = {p.name: p.stat().st_mtime_ns for p in clean_run.iterdir()}
    assert main(_args(big_raw, clean_run)) == 0
    assert {p.name: p.stat().st_mtime_ns for p in clean_run.iterdir()} == before


def test_damaged_shard_is_rewritten_from_there(big_raw, clean_run, tmp_path):
    out = tmp_path / "out"
    main(_args(big_raw, out))
    fg = sorted(s["name"] for s in manifest(out)["shards"] if s["kind"] == "fg")
    assert len(fg) >= 3
    victim = out / fg[1]
    data = bytearray(victim.read_bytes())
    data[2000] ^= 0xFF
    victim.write_bytes(bytes(data))
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.tar")}
    assert main(_args(big_raw, out)) == 0
    assert verify_dataset(out) == []
    assert _shas(out) == _shas(clean_run)
    changed = {n for n, t in stamps.items() if (out / n).stat().st_mtime_ns != t}
    assert fg[1] in changed and fg[0] not in changed
    assert not any(n.startswith(("bg-", "train-")) for n in changed)


def test_changed_input_is_detected(big_raw, tmp_path):
    raw = make_raw(tmp_path / "raw", n_fg=4, n_bg=2, size=64)
    out = tmp_path / "out"
    args = ["folders", "--fg", str(raw["fg"]), "--alpha", str(raw["alpha"]), "--bg", str(raw["bg"]),
            "--out", str(out), "--workers", "1"]
    assert main(args) == 0
    (raw["fg"] / "obj00.png").unlink()
    (raw["alpha"] / "obj00.png").unlink()
    assert main(args) == 0
    assert counts(out)["fg"] == 3 and verify_dataset(out) == []


def test_other_options_or_foreign_files_refused(big_raw, clean_run, tmp_path, capsys):
    args = _args(big_raw, clean_run)
    args[args.index("--shard-size") + 1] = "1MB"
    assert main(args) == 2
    assert "different options" in capsys.readouterr().err
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "holiday.txt").write_text("mine")
    raw_small = make_raw(tmp_path / "raw", n_fg=2, n_bg=2, size=64)
    small = ["folders", "--fg", str(raw_small["fg"]), "--alpha", str(raw_small["alpha"]), "--bg",
             str(raw_small["bg"]), "--out", str(foreign), "--workers", "1"]
    assert main(small) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(small + ["--overwrite"]) == 0
    assert (foreign / "holiday.txt").exists() and verify_dataset(foreign) == []
    out2 = tmp_path / "o2"
    assert main(small[:-2] + ["--out", str(out2), "--workers", "1"]) == 0
    assert main(small[:-2] + ["--out", str(out2), "--workers", "1", "--seed", "3"]) == 2
    assert main(small[:-2] + ["--out", str(out2), "--workers", "1", "--seed", "3", "--overwrite"]) == 0
    assert manifest(out2)["options"]["seed"] == 3 and verify_dataset(out2) == []
