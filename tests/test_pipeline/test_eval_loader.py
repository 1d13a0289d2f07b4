"""The DALI evaluation loader: full-size test/val samples, each exactly once across ranks."""
from __future__ import annotations

import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import pipeline
from pipeline.dataset import Dataset


@pytest.mark.parametrize("split", ["test", "val"])
@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_every_sample_once_at_full_size(synthetic_dataset: Path, split: str, world_size: int) -> None:
    expected = {k for _, k in Dataset(synthetic_dataset).samples(split)}
    seen: list[str] = []
    for rank in range(world_size):
        ev = pipeline.build_eval_loader(synthetic_dataset, split=split, rank=rank, world_size=world_size)
        got = list(ev)
        assert len(got) == len(ev)
        for s in got:
            h, w = s["size"]
            assert s["image"].shape == (1, 3, h, w) and s["alpha"].shape == (1, 1, h, w)
            assert s["trimap"].shape == (1, 1, h, w) and s["image"].dtype == torch.float32
            assert set((s["trimap"] * 255).round().unique().tolist()) <= {0.0, 128.0, 255.0}
            assert 0.0 <= float(s["image"].min()) and float(s["image"].max()) <= 1.0
            seen.append(s["key"])
    assert sorted(seen) == sorted(expected)


def test_pixels_match_the_shard(synthetic_dataset: Path) -> None:
    sample = next(iter(pipeline.build_eval_loader(synthetic_dataset)))
    tar_path = next(s.path for s, k in Dataset(synthetic_dataset).samples("test") if k == sample["key"])
    with tarfile.open(tar_path) as tar:
        raw = tar.extractfile(f"{sample['key']}.image.png").read()
    ref = cv2.cvtColor(cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    got = (sample["image"][0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    assert np.array_equal(ref, got) and sample["size"] == ref.shape[:2]


def test_uint8_samples_are_the_float_samples_unscaled(synthetic_dataset: Path) -> None:
    floats = list(pipeline.build_eval_loader(synthetic_dataset))
    raw = list(pipeline.build_eval_loader(synthetic_dataset, as_uint8=True))
    assert [s["key"] for s in floats] == [s["key"] for s in raw]
    for f, r in zip(floats, raw):
        assert r["image"].dtype == np.uint8 and r["image"].shape == (*f["size"], 3)
        assert r["alpha"].shape == r["trimap"].shape == f["size"]
        np.testing.assert_array_equal(r["image"], (f["image"][0].permute(1, 2, 0) * 255).round().byte().numpy())
        np.testing.assert_array_equal(r["alpha"], (f["alpha"][0, 0] * 255).round().byte().numpy())
        np.testing.assert_array_equal(r["trimap"], (f["trimap"][0, 0] * 255).round().byte().numpy())
