"""Photo samples (photo-* shards of image + alpha datasets): the loader hands over the stored photo itself, cropped
like its alpha and estimated layers, never re-composited; mixed with composites at a ratio, deterministically and
resumably."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import pipeline
from data_prep.cli import main as data_prep_main
from data_prep.reader import iter_samples
from pipeline.dataset import DatasetError
from pipeline.mixed import photo_batches
from tests.test_data_prep.test_layouts import _bgs, _tree

pytestmark = pytest.mark.timeout(300)
IDENTITY = dict(p_resize=0.0, affine=False, p_hflip=0.0, p_combine=0.0)


@pytest.fixture(scope="module")
def photo_sets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The AM-2k fixture tree prepared with --photos, in both encodings."""
    tmp = tmp_path_factory.mktemp("photos")
    _tree("am2k", tmp / "am2k")
    bg = _bgs(tmp / "bg")
    out = {}
    for enc in ("png", "raw"):
        out[enc] = tmp / enc
        assert data_prep_main(["am2k", "--root", str(tmp / "am2k"), "--bg", str(bg), "--out", str(out[enc]),
                               "--workers", "1", "--val-count", "1", "--photos", "--encoding", enc]) == 0
    return out


def _stored(dataset: Path) -> dict[str, dict[str, np.ndarray]]:
    """key -> decoded image/alpha of every photo-* sample (png encoding)."""
    out = {}
    for tar in sorted(dataset.glob("photo-*.tar")):
        for key, m in iter_samples(tar):
            out[key] = {b: np.asarray(Image.open(io.BytesIO(m[f"{b}.png"]))) for b in ("image", "alpha")}
    return out


def _window(big: np.ndarray, small: np.ndarray) -> tuple[int, int] | None:
    """Top-left of an exact occurrence of `small` in `big`, or None."""
    h, w = small.shape[:2]
    for y in range(big.shape[0] - h + 1):
        for x in range(big.shape[1] - w + 1):
            if np.array_equal(big[y:y + h, x:x + w], small):
                return y, x
    return None


def test_photo_batches_are_the_stored_photos(photo_sets: dict[str, Path]) -> None:
    stored = _stored(photo_sets["png"])
    loader = pipeline.build_train_loader(photo_sets["png"], 2, 16, num_threads=1, seed=4, photo_ratio=1.0,
                                         iterations_per_epoch=3, **IDENTITY)
    seen = 0
    for batch in loader:
        for j, key in enumerate(loader.last_keys):
            image = (batch["image"][j].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
            alpha = (batch["alpha"][j, 0] * 255).round().to(torch.uint8).numpy()
            at = _window(stored[key]["image"], image)
            assert at is not None, f"{key}: the batch image is not a window of the stored photo"
            y, x = at
            assert np.array_equal(stored[key]["alpha"][y:y + 16, x:x + 16], alpha)
            seen += 1
    assert seen == 6


def test_photos_are_not_recomposited(photo_sets: dict[str, Path]) -> None:
    """The image is the photo, not fg*alpha + bg*(1-alpha) of its estimated layers (which only approximate it)."""
    loader = pipeline.build_train_loader(photo_sets["png"], 2, 32, num_threads=1, seed=1, photo_ratio=1.0,
                                         iterations_per_epoch=4)
    worst, mean = 0.0, []
    for b in loader:
        err = (b["fg"] * b["alpha"] + b["bg"] * (1 - b["alpha"]) - b["image"]).abs()
        worst = max(worst, float(err.max()))
        mean.append(float(err.mean()))
    assert worst > 1.5 / 255          # a re-composite would match to float rounding
    assert float(np.mean(mean)) < 0.03  # the estimated layers still explain the photo


def test_both_encodings_give_the_same_photo_batches(photo_sets: dict[str, Path]) -> None:
    got = {}
    for enc, path in photo_sets.items():
        got[enc] = [dict(b) for b in pipeline.build_train_loader(path, 2, 32, num_threads=1, seed=2, photo_ratio=1.0,
                                                                 iterations_per_epoch=2)]
    for a, b in zip(got["png"], got["raw"]):
        for name in a:
            assert torch.equal(a[name], b[name]), name


def test_mixed_loader_ratio_determinism_and_resume(photo_sets: dict[str, Path]) -> None:
    mask = photo_batches(7, 0, 2000, 0.3)
    assert 0.25 < mask.mean() < 0.35
    assert np.array_equal(mask, photo_batches(7, 0, 2000, 0.3)) and not np.array_equal(mask, photo_batches(7, 1, 2000, 0.3))

    def build():
        return pipeline.build_train_loader(photo_sets["png"], 2, 32, num_threads=1, seed=7, photo_ratio=0.5,
                                           iterations_per_epoch=8)

    loader = build()
    assert isinstance(loader, pipeline.MixedTrainLoader) and len(loader) == 8
    loader.set_epoch(1)
    full, sources = [], []
    for b in loader:
        full.append(dict(b))
        sources.append(loader.last_source)
    assert sources == ["photo" if m else "composite" for m in photo_batches(7, 1, 8, 0.5)]
    assert set(sources) == {"photo", "composite"}
    resumed = build()
    resumed.set_epoch(1, start_batch=5)
    tail = [dict(b) for b in resumed]
    assert len(tail) == 3
    for a, b in zip(full[5:], tail):
        for name in a:
            assert torch.equal(a[name], b[name]), name


def test_photo_ratio_needs_photo_shards(synthetic_dataset: Path) -> None:
    with pytest.raises(DatasetError, match="--photos"):
        pipeline.build_train_loader(synthetic_dataset, 2, 32, num_threads=1, photo_ratio=0.5)
    with pytest.raises(ValueError, match="photo_ratio"):
        pipeline.build_train_loader(synthetic_dataset, 2, 32, num_threads=1, photo_ratio=1.5)
