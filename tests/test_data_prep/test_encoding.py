"""Shard encodings: `--encoding raw` writes .npy members holding exactly the pixels of the png encoding's members,
records the encoding in the manifest, and verify/stats/resume honour it."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from data_prep.cli import main
from data_prep.images import decode
from data_prep.reader import iter_samples
from data_prep.stats import compute_stats
from data_prep.verify import verify_dataset
from formats.manifest import read_manifest

from .conftest import manifest


def _samples(out: Path) -> dict[tuple[str, str], dict[str, bytes]]:
    return {(s["kind"], key): members for s in manifest(out)["shards"]
            for key, members in iter_samples(out / s["name"])}


def _pixels(members: dict[str, bytes]) -> dict[str, np.ndarray]:
    """Image name (fg, alpha, ...) -> decoded pixels; meta.json kept as parsed JSON under its name."""
    out = {}
    for ext, data in members.items():
        name, _, kind = ext.partition(".")
        out[name] = json.loads(data) if kind == "json" else decode(data, ext)
    return out


def _same_pixels(png: Path, raw: Path) -> None:
    a, b = _samples(png), _samples(raw)
    assert sorted(a) == sorted(b) and a
    for sample, members in a.items():
        assert all(not e.endswith(".npy") for e in members)
        assert all(e.endswith((".npy", ".json")) for e in b[sample]), b[sample].keys()
        pa, pb = _pixels(members), _pixels(b[sample])
        assert sorted(pa) == sorted(pb), sample
        for name in pa:
            if isinstance(pa[name], np.ndarray):
                assert pa[name].dtype == pb[name].dtype == np.uint8
                assert np.array_equal(pa[name], pb[name]), (sample, name)
            else:
                assert pa[name] == pb[name]


@pytest.fixture(scope="module")
def synthetic_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("enc")
    for enc in ("png", "raw"):
        assert main(["synthetic", "--out", str(root / enc), "--count", "4", "--size", "96", "--workers", "1",
                     "--train-composites", "1", "--encoding", enc]) == 0
    return root / "png", root / "raw"


def test_synthetic_raw_holds_the_png_pixels(synthetic_pair: tuple[Path, Path]) -> None:
    _same_pixels(*synthetic_pair)


def test_manifest_records_the_encoding(synthetic_pair: tuple[Path, Path]) -> None:
    png, raw = synthetic_pair
    assert manifest(png)["encoding"] == "png" and manifest(raw)["encoding"] == "raw"
    assert manifest(raw)["options"]["encoding"] == "raw"
    assert read_manifest(raw).encoding == "raw"
    doc = manifest(png)
    del doc["encoding"]                                       # a manifest written before the field existed
    (png / "manifest.json").write_text(json.dumps(doc))
    assert read_manifest(png).encoding == "png"


def test_raw_is_larger_on_disk(synthetic_pair: tuple[Path, Path]) -> None:
    png, raw = synthetic_pair
    size = {p: sum(s["bytes"] for s in manifest(p)["shards"]) for p in (png, raw)}
    assert size[raw] > 1.5 * size[png]


def test_verify_and_stats_read_raw(synthetic_pair: tuple[Path, Path]) -> None:
    png, raw = synthetic_pair
    assert verify_dataset(raw) == []
    a, b = compute_stats(png), compute_stats(raw)
    assert a["encoding"] == "png" and b["encoding"] == "raw" and sorted(a["kinds"]) == sorted(b["kinds"])
    for kind, entry in a["kinds"].items():   # same samples, sizes and alpha statistics; only the bytes differ
        assert {k: v for k, v in entry.items() if k != "bytes"} == \
            {k: v for k, v in b["kinds"][kind].items() if k != "bytes"}


def test_verify_names_a_truncated_raw_member(synthetic_pair: tuple[Path, Path], tmp_path: Path) -> None:
    import shutil
    import tarfile

    raw = Path(shutil.copytree(synthetic_pair[1], tmp_path / "raw"))
    shard = next(raw / s["name"] for s in manifest(raw)["shards"] if s["kind"] == "fg")
    with tarfile.open(shard) as tf:
        member = next(m for m in tf if m.name.endswith(".alpha.npy"))
    with open(shard, "r+b") as f:                             # garble the .npy header in place (size unchanged)
        f.seek(member.offset_data + 12)
        f.write(b"\x00" * 40)
    problems = verify_dataset(raw)
    assert any(p[0] == str(shard) and "alpha.npy does not decode" in p[1] and member.name.split(".")[0] in p[1]
               for p in problems), problems


def test_resume_refuses_another_encoding(synthetic_pair: tuple[Path, Path], tmp_path: Path,
                                         capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "ds"
    args = ["synthetic", "--out", str(out), "--count", "2", "--size", "64", "--workers", "1"]
    assert main(args) == 0
    assert main(args + ["--encoding", "raw"]) == 2
    assert "encoding" in capsys.readouterr().err
    assert main(args + ["--encoding", "raw", "--overwrite"]) == 0 and manifest(out)["encoding"] == "raw"
    assert main(args + ["--encoding", "raw"]) == 0            # same options: up to date


@pytest.mark.parametrize("enc", ["png", "raw"])
def test_folders_take_the_encoding(raw: dict[str, Path], tmp_path: Path, enc: str) -> None:
    out = tmp_path / f"out_{enc}"
    assert main(["folders", "--fg", str(raw["fg"]), "--alpha", str(raw["alpha"]), "--bg", str(raw["bg"]),
                 "--out", str(out), "--workers", "1", "--val-count", "1", "--train-composites", "1",
                 "--encoding", enc]) == 0
    assert manifest(out)["encoding"] == enc and verify_dataset(out) == []


def test_folders_raw_holds_the_png_pixels(raw: dict[str, Path], tmp_path: Path) -> None:
    """fg JPEGs and backgrounds are passed through byte for byte in png; raw holds what they decode to."""
    for enc in ("png", "raw"):
        assert main(["folders", "--fg", str(raw["fg"]), "--alpha", str(raw["alpha"]), "--bg", str(raw["bg"]),
                     "--out", str(tmp_path / f"out_{enc}"), "--workers", "1", "--encoding", enc]) == 0
    _same_pixels(tmp_path / "out_png", tmp_path / "out_raw")


def test_composition1k_takes_the_encoding(tmp_path: Path) -> None:
    from .test_composition1k import _layout

    root, bg = _layout(tmp_path)
    for enc in ("png", "raw"):
        assert main(["composition1k", "--root", str(root), "--bg", str(bg), "--out", str(tmp_path / f"out_{enc}"),
                     "--workers", "1", "--encoding", enc]) == 0
        assert verify_dataset(tmp_path / f"out_{enc}") == []
    _same_pixels(tmp_path / "out_png", tmp_path / "out_raw")
