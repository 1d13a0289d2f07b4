"""composites=True: train-* shards (written by data_prep --train-composites) read and augmented consistently."""
from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest

import pipeline

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def composites_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("composites")
    subprocess.run([sys.executable, "-m", "data_prep", "synthetic", "--out", str(out), "--count", "4", "--size",
                    "160", "--seed", "1", "--train-composites", "2", "--workers", "1"], cwd=REPO, check=True)
    return out


def test_composites_batches(composites_dataset: Path) -> None:
    ld = pipeline.build_train_loader(composites_dataset, 4, 48, composites=True, num_threads=1, seed=4)
    assert len(ld) == 2                                                   # 8 train composites / batch 4
    for b in ld:
        assert b["image"].shape == (4, 3, 48, 48) and b["trimap"].shape == (4, 1, 48, 48)
        comp = b["fg"] * b["alpha"] + b["bg"] * (1 - b["alpha"])
        assert float((comp - b["image"]).abs().max()) < 1.0 / 255
        tri, alpha = (b["trimap"] * 255).round(), b["alpha"]
        assert set(tri.unique().tolist()) <= {0.0, 128.0, 255.0}
        assert bool((alpha[tri == 255] == 1).all()) and bool((alpha[tri == 0] == 0).all())
        assert all(k.startswith("train") for k in ld.last_keys)


def test_composites_without_augmentation_are_windows_of_the_stored_sample(composites_dataset: Path) -> None:
    """Aug off: alpha and fg are exact windows of the stored members (same place), the image close to image.png
    (not equal: the graph recomposites from the stored JPEG background, image.png was made before JPEG coding)."""
    ld = pipeline.build_train_loader(composites_dataset, 2, 48, composites=True, num_threads=1, p_resize=0,
                                     affine=False, p_hflip=0, hsv_jitter=False)
    batch = next(iter(ld))
    tars = [tarfile.open(p) for p in sorted(composites_dataset.glob("train-*.tar"))]

    def member(key: str, ext: str) -> np.ndarray:
        tar = next(t for t in tars if f"{key}.{ext}" in t.getnames())
        img = cv2.imdecode(np.frombuffer(tar.extractfile(f"{key}.{ext}").read(), np.uint8), cv2.IMREAD_UNCHANGED)
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB) if img.ndim == 3 else img

    for j, key in enumerate(ld.last_keys):
        fg, image = member(key, "fg.png"), member(key, "image.png")
        got_fg = (batch["fg"][j].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        score = cv2.matchTemplate(fg, got_fg, cv2.TM_SQDIFF)
        y, x = np.unravel_index(np.argmin(score), score.shape)
        assert np.array_equal(fg[y:y + 48, x:x + 48], got_fg)
        got_alpha = (batch["alpha"][j, 0].numpy() * 255).round().astype(np.uint8)
        assert np.array_equal(member(key, "alpha.png")[y:y + 48, x:x + 48], got_alpha)
        got_image = batch["image"][j].permute(1, 2, 0).numpy()
        assert float(np.abs(image[y:y + 48, x:x + 48] / 255.0 - got_image).mean()) < 0.05
    for t in tars:
        t.close()


def test_composites_refused_without_train_shards(synthetic_dataset: Path) -> None:
    with pytest.raises(pipeline.DatasetError, match="--train-composites"):
        pipeline.build_train_loader(synthetic_dataset, 2, 48, composites=True)
