"""verify catches corrupted, truncated, missing and unlisted files, and bad indexes, naming each file."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from data_prep.cli import main
from data_prep.verify import verify_dataset

from .conftest import manifest, run_cli


@pytest.fixture()
def dataset(raw, tmp_path) -> Path:
    out = tmp_path / "out"
    assert main(["folders", "--fg", str(raw["fg"]), "--alpha", str(raw["alpha"]), "--bg", str(raw["bg"]),
                 "--out", str(out), "--workers", "1", "--val-count", "1", "--test-composites", "1",
                 "--test-count", "1"]) == 0
    assert verify_dataset(out) == []
    return out


def _shard(out: Path, kind: str) -> Path:
    return out / next(s["name"] for s in manifest(out)["shards"] if s["kind"] == kind)


def _problems_for(out: Path, path: Path) -> list[str]:
    return [p for f, p in verify_dataset(out) if f == str(path)]


def test_flipped_byte_in_member_data(dataset):
    tar = _shard(dataset, "fg")
    data = bytearray(tar.read_bytes())
    data[1536 + 200] ^= 0x55  # inside the first member's payload (header is 512 bytes at 1024)
    tar.write_bytes(bytes(data))
    probs = _problems_for(dataset, tar)
    assert any("sha256" in p for p in probs), probs


def test_truncated_shard(dataset):
    tar = _shard(dataset, "test")
    data = tar.read_bytes()
    tar.write_bytes(data[: len(data) // 2])
    probs = _problems_for(dataset, tar)
    assert any("truncated" in p for p in probs) and any("sha256" in p for p in probs), probs
    assert any("samples" in p or "decode" in p or "tar" in p for p in probs), probs


def test_missing_index_and_stale_index(dataset):
    idx = _shard(dataset, "bg").with_suffix(".idx")
    idx.unlink()
    assert _problems_for(dataset, idx) == ["DALI index missing"]
    idx2 = _shard(dataset, "val").with_suffix(".idx")
    idx2.write_text(idx2.read_text().replace(" 1536 ", " 1537 ", 1))
    assert _problems_for(dataset, idx2) == ["DALI index does not match the tar's members"]


def test_missing_shard_unlisted_tar_and_partial(dataset):
    tar = _shard(dataset, "fg")
    shutil.move(tar, dataset / "fg-000099.tar")
    (dataset / ".fg-000100.tar.partial").write_bytes(b"x")
    probs = dict(verify_dataset(dataset))
    assert "missing" in probs[str(tar)]
    assert "not listed" in probs[str(dataset / "fg-000099.tar")]
    assert "incomplete shard" in probs[str(dataset / ".fg-000100.tar.partial")]


def test_cli_exit_codes_and_report(dataset):
    ok = run_cli("verify", str(dataset))
    assert ok.returncode == 0 and "OK" in ok.stdout
    (dataset / "manifest.json").unlink()
    bad = run_cli("verify", str(dataset))
    assert bad.returncode == 1 and "manifest.json" in bad.stdout and "no manifest.json" in bad.stdout


def test_contract_violations_inside_a_checksummed_shard(tmp_path):
    """A shard whose checksum matches but whose content breaks the contract: undecodable member, fg/alpha size
    mismatch, trimap values outside 0/128/255, missing member."""
    import numpy as np

    from data_prep.images import encode_jpg, encode_png
    from data_prep.manifest import write_manifest
    from data_prep.shard_writer import RollingShardWriter

    w = RollingShardWriter(tmp_path, "fg", 1 << 20)
    rgb = np.zeros((8, 10, 3), np.uint8)
    w.write({"__key__": "a", "fg.png": encode_png(rgb), "alpha.png": b"not a png", "meta.json": b"{}"}, "d")
    w.write({"__key__": "b", "fg.png": encode_png(rgb), "alpha.png": encode_png(np.zeros((9, 10), np.uint8)),
             "meta.json": b'{"width": 10, "height": 8}'}, "d")
    w.write({"__key__": "c", "fg.png": encode_png(rgb)}, "d")
    rec_fg = w.finish_shard()
    w = RollingShardWriter(tmp_path, "test", 1 << 20)
    tri = np.full((8, 10), 128, np.uint8)
    tri[0, 0] = 77
    w.write({"__key__": "t", "image.png": encode_png(rgb), "trimap.png": encode_png(tri),
             "alpha.png": encode_png(np.zeros((8, 10), np.uint8)), "meta.json": b'{"width": 10, "height": 8}'}, "d")
    rec_test = w.finish_shard()
    w = RollingShardWriter(tmp_path, "bg", 1 << 20)
    w.write({"__key__": "g", "bg.jpg": encode_jpg(rgb)}, "d")
    rec_bg = w.finish_shard()
    write_manifest(tmp_path, {}, [r.manifest_entry() for r in (rec_fg, rec_bg, rec_test)], [])
    probs = [p for _f, p in verify_dataset(tmp_path)]
    assert any("'a': alpha.png does not decode" in p for p in probs), probs
    assert any("'b': member sizes disagree" in p for p in probs), probs
    assert any("'c': missing" in p for p in probs), probs
    assert any("'t': trimap values [77]" in p for p in probs), probs
    assert not any("bg-000000" in f for f, _p in verify_dataset(tmp_path))
