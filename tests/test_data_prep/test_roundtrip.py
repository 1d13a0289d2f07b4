"""folders -> shards -> read back every sample byte-for-byte; the .idx equals DALI's own wds2idx output."""
from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_prep.cli import main
from data_prep.reader import iter_samples
from data_prep.verify import verify_dataset

from .conftest import counts, manifest


def _all_samples(out: Path, kind: str) -> dict[str, dict[str, bytes]]:
    got = {}
    for s in manifest(out)["shards"]:
        if s["kind"] == kind:
            for key, members in iter_samples(out / s["name"]):
                assert key not in got, f"duplicate key {key}"
                got[key] = members
    return got


def test_folders_round_trip_byte_for_byte(raw, tmp_path):
    out = tmp_path / "out"
    rc = main(["folders", "--fg", str(raw["fg"]), "--alpha", str(raw["alpha"]), "--bg", str(raw["bg"]),
               "--out", str(out), "--shard-size", "20KB", "--workers", "1"])
    assert rc == 0
    assert counts(out) == {"fg": 6, "bg": 4}
    assert len([s for s in manifest(out)["shards"] if s["kind"] == "fg"]) > 1, "shard size limit not applied"
    fgs = _all_samples(out, "fg")
    assert sorted(fgs) == [f"obj{i:02d}" for i in range(6)]
    for key, members in fgs.items():
        src = raw["fg"] / (f"{key}.jpg" if int(key[-2:]) % 2 else f"{key}.png")
        ext = "fg.jpg" if src.suffix == ".jpg" else "fg.png"
        assert members[ext] == src.read_bytes()
        assert members["alpha.png"] == (raw["alpha"] / f"{key}.png").read_bytes()
        meta = json.loads(members["meta.json"])
        w, h = Image.open(src).size
        assert (meta["width"], meta["height"], meta["source"]) == (w, h, src.name)
    bgs = _all_samples(out, "bg")
    assert {k: m["bg.jpg"] for k, m in bgs.items()} == {
        f"bg_{p.stem}": p.read_bytes() for p in sorted(raw["bg"].iterdir())}
    assert verify_dataset(out) == []


def test_shuffled_across_shards_with_seed(raw, tmp_path):
    orders = []
    for seed in (0, 1):
        out = tmp_path / f"s{seed}"
        assert main(["folders", "--fg", str(raw["fg"]), "--alpha", str(raw["alpha"]), "--bg", str(raw["bg"]),
                     "--out", str(out), "--seed", str(seed), "--workers", "1"]) == 0
        orders.append(list(_all_samples(out, "fg")))
    assert sorted(orders[0]) == sorted(orders[1]) and orders[0] != orders[1]


def test_composites_val_test_train(raw, tmp_path):
    out = tmp_path / "out"
    assert main(["folders", "--fg", str(raw["fg"]), "--alpha", str(raw["alpha"]), "--bg", str(raw["bg"]),
                 "--out", str(out), "--val-count", "1", "--test-count", "2", "--test-composites", "2",
                 "--train-composites", "1", "--workers", "2"]) == 0
    assert counts(out) == {"fg": 3, "bg": 4, "val": 2, "test": 4, "train": 3}
    fg_sources = {json.loads(m["meta.json"])["source"] for m in _all_samples(out, "fg").values()}
    for kind in ("val", "test"):
        for key, m in _all_samples(out, kind).items():
            meta = json.loads(m["meta.json"])
            assert meta["fg"] not in fg_sources, f"{kind} foreground {meta['fg']} leaks into training"
            image = np.asarray(Image.open(io.BytesIO(m["image.png"])))
            alpha = np.asarray(Image.open(io.BytesIO(m["alpha.png"])))
            trimap = np.asarray(Image.open(io.BytesIO(m["trimap.png"])))
            assert image.shape[:2] == alpha.shape == trimap.shape == (meta["height"], meta["width"])
            assert set(np.unique(trimap)) <= {0, 128, 255}
            assert np.all(trimap[(alpha > 0) & (alpha < 255)] == 128)  # soft alpha is always unknown
            # the composite is fg*a + bg*(1-a) of the source foreground
            src = np.asarray(Image.open(raw["fg"] / meta["fg"]).convert("RGB")).astype(float)
            opaque = alpha == 255
            assert np.abs(image[opaque].astype(float) - src[opaque]).max() <= 0
    for m in _all_samples(out, "train").values():
        assert set(m) == {"image.png", "alpha.png", "trimap.png", "fg.png", "bg.jpg"}
        fg = np.asarray(Image.open(io.BytesIO(m["fg.png"]))).astype(float)
        bg = np.asarray(Image.open(io.BytesIO(m["bg.jpg"]))).astype(float)
        a = np.asarray(Image.open(io.BytesIO(m["alpha.png"])))[..., None] / 255.0
        image = np.asarray(Image.open(io.BytesIO(m["image.png"]))).astype(float)
        # bg.jpg is lossy, so compare where the foreground dominates plus a JPEG tolerance elsewhere
        assert np.abs(image - (fg * a + bg * (1 - a))).mean() < 3.0
    assert verify_dataset(out) == []


@pytest.mark.skipif(shutil.which("tar") is None, reason="wds2idx needs GNU tar")
def test_index_identical_to_dali_wds2idx(raw, tmp_path):
    out = tmp_path / "out"
    assert main(["folders", "--fg", str(raw["fg"]), "--alpha", str(raw["alpha"]), "--bg", str(raw["bg"]),
                 "--out", str(out), "--workers", "1"]) == 0
    wds2idx = Path(sys.executable).parent / "wds2idx"
    for s in manifest(out)["shards"]:
        ref = tmp_path / (s["name"] + ".ref.idx")
        subprocess.run([str(wds2idx), str(out / s["name"]), str(ref)], check=True, capture_output=True)
        assert (out / s["name"]).with_suffix(".idx").read_text().split() == ref.read_text().split()
