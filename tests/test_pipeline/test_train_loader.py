"""The DALI training loader on real synthetic shards: shapes, ranges, composite identity, trimaps, epochs, seeds."""
from __future__ import annotations

import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import pipeline

CROP = 64
BATCH = 4
UNKNOWN = float(torch.tensor(128 / 255, dtype=torch.float32))  # the trimap's unknown value in float32


def _batches(loader, epoch: int) -> list[dict[str, torch.Tensor]]:
    loader.set_epoch(epoch)
    return [dict(b) for b in loader]


@pytest.fixture(scope="module")
def loader(synthetic_dataset: Path):
    return pipeline.build_train_loader(synthetic_dataset, BATCH, CROP, seed=1, num_threads=2)


@pytest.fixture(scope="module")
def epoch0(loader) -> list[dict[str, torch.Tensor]]:
    return _batches(loader, 0)


def test_shapes_ranges_and_len(loader, epoch0) -> None:
    assert len(loader) == 3 and len(epoch0) == 3          # 12 foregrounds / batch 4, one rank
    for b in epoch0:
        for name in ("image", "fg", "bg"):
            assert b[name].shape == (BATCH, 3, CROP, CROP) and b[name].dtype == torch.float32
        for name in ("alpha", "trimap"):
            assert b[name].shape == (BATCH, 1, CROP, CROP) and b[name].dtype == torch.float32
        for name, t in b.items():
            assert float(t.min()) >= 0.0 and float(t.max()) <= 1.0, name
        assert set(torch.unique(b["trimap"]).tolist()) <= {0.0, UNKNOWN, 1.0}


def test_composite_identity(epoch0) -> None:
    for b in epoch0:
        comp = b["fg"] * b["alpha"] + b["bg"] * (1 - b["alpha"])
        assert float((comp - b["image"]).abs().max()) < 1.0 / 255


def test_trimap_agrees_with_alpha_and_crop_has_unknown(epoch0) -> None:
    for b in epoch0:
        alpha, trimap = b["alpha"], b["trimap"]
        assert bool((alpha[trimap == 1.0] == 1.0).all())      # definite foreground is opaque
        assert bool((alpha[trimap == 0.0] == 0.0).all())      # definite background is transparent
        soft = (alpha > 0) & (alpha < 1)
        assert bool((trimap[soft] == 128 / 255).all())        # every soft pixel is unknown
        unknown = (trimap == 128 / 255).flatten(1).sum(1)
        assert bool((unknown > 0).all())                      # each crop is centred on an unknown pixel
        # the chosen pixel sits at the crop centre (spec step 5)
        assert bool((trimap[:, 0, CROP // 2, CROP // 2] == 128 / 255).all())


def test_fixed_iterations_per_epoch(synthetic_dataset: Path) -> None:
    ld = pipeline.build_train_loader(synthetic_dataset, 2, CROP, iterations_per_epoch=5, num_threads=1)
    assert len(ld) == 5
    for epoch in range(2):
        ld.set_epoch(epoch)
        assert sum(1 for _ in ld) == 5


def test_deterministic_and_resumable(synthetic_dataset: Path, loader, epoch0) -> None:
    second = pipeline.build_train_loader(synthetic_dataset, BATCH, CROP, seed=1, num_threads=1)
    again = _batches(second, 0)
    for a, b in zip(epoch0, again):
        for k in a:
            assert torch.equal(a[k], b[k]), k
    # resuming at epoch 1 in a fresh loader repeats what epoch 1 gives after epoch 0
    after = _batches(loader, 1)
    resumed = pipeline.build_train_loader(synthetic_dataset, BATCH, CROP, seed=1, num_threads=2)
    direct = _batches(resumed, 1)
    assert all(torch.equal(a["image"], b["image"]) for a, b in zip(after, direct))
    assert not torch.equal(after[0]["image"], epoch0[0]["image"])   # epochs differ
    other = _batches(pipeline.build_train_loader(synthetic_dataset, BATCH, CROP, seed=2, num_threads=1), 0)
    assert not torch.equal(other[0]["image"], epoch0[0]["image"])   # seeds differ



def test_mid_epoch_start_gives_the_rest_of_the_epoch(synthetic_dataset: Path, loader) -> None:
    """set_epoch(e, start_batch=k) in a fresh loader yields exactly batches k.. of a full pass of epoch e (the
    mid-epoch resume of jobs/train_loop.py), without producing the first k."""
    full = _batches(loader, 1)
    assert len(full) == len(loader) >= 2
    fresh = pipeline.build_train_loader(synthetic_dataset, BATCH, CROP, seed=1, num_threads=1)
    fresh.set_epoch(1, start_batch=1)
    rest = [dict(b) for b in fresh]
    assert len(rest) == len(full) - 1
    for a, b in zip(full[1:], rest):
        for k in a:
            assert torch.equal(a[k], b[k]), k
    fresh.set_epoch(1, start_batch=len(fresh))
    assert list(fresh) == []
    with pytest.raises(ValueError, match="start_batch"):
        fresh.set_epoch(0, start_batch=len(fresh) + 1)

def _source_images(dataset: Path, key: str) -> tuple[np.ndarray, np.ndarray]:
    for tar_path in sorted(dataset.glob("fg-*.tar")):
        with tarfile.open(tar_path) as tar:
            names = {m.name: m for m in tar.getmembers()}
            if f"{key}.alpha.png" in names:
                fg_name = next(n for n in names if n.startswith(f"{key}.fg."))
                fg = cv2.imdecode(np.frombuffer(tar.extractfile(fg_name).read(), np.uint8), cv2.IMREAD_COLOR)
                alpha = cv2.imdecode(np.frombuffer(tar.extractfile(f"{key}.alpha.png").read(), np.uint8),
                                     cv2.IMREAD_UNCHANGED)
                return cv2.cvtColor(fg, cv2.COLOR_BGR2RGB), alpha
    raise KeyError(key)


def test_augmentation_off_gives_exact_source_windows(synthetic_dataset: Path) -> None:
    """With every random step off the crops are windows of the source fg/alpha, at the same place."""
    ld = pipeline.build_train_loader(synthetic_dataset, BATCH, CROP, num_threads=1, p_combine=0, p_resize=0,
                                     affine=False, p_hflip=0, hsv_jitter=False)
    batch = next(iter(ld))
    for j, key in enumerate(ld.last_keys):
        fg, alpha = _source_images(synthetic_dataset, key)
        a = (batch["alpha"][j, 0].numpy() * 255).round().astype(np.uint8)
        f = (batch["fg"][j].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        score = cv2.matchTemplate(fg, f, cv2.TM_SQDIFF)
        y, x = np.unravel_index(np.argmin(score), score.shape)
        assert np.array_equal(fg[y:y + CROP, x:x + CROP], f)   # (matchTemplate's float sums are not exact)
        assert np.array_equal(alpha[y:y + CROP, x:x + CROP], a)


def _member(shard_path: Path, key: str, prefix: str) -> np.ndarray:
    with tarfile.open(shard_path) as tar:
        name = next(n for n in tar.getnames() if n.startswith(f"{key}.{prefix}."))
        img = cv2.imdecode(np.frombuffer(tar.extractfile(name).read(), np.uint8), cv2.IMREAD_COLOR)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def test_background_is_a_window_where_it_needs_no_resampling(synthetic_dataset: Path) -> None:
    """Aug off: where the background is at least the foreground's size (scale 1) it is decoded exactly over the crop
    window (no resize) and sits at the fg's place; elsewhere it is smaller than the foreground (so it is upscaled).
    JPEG decoders may differ by a level or two, so windows are compared with a small tolerance."""
    ld = pipeline.build_train_loader(synthetic_dataset, 12, CROP, num_threads=1, p_combine=0, p_resize=0,
                                     affine=False, p_hflip=0, hsv_jitter=False)
    plan = ld.sampler.plan(0)
    batch = next(iter(ld))
    same_scale = 0
    for j, key in enumerate(ld.last_keys):
        fg, _ = _source_images(synthetic_dataset, key)
        f = (batch["fg"][j].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        y, x = np.unravel_index(np.argmin(cv2.matchTemplate(fg, f, cv2.TM_SQDIFF)), (fg.shape[0] - CROP + 1,
                                                                                     fg.shape[1] - CROP + 1))
        bshard, bkey, _ = plan.sources[j][1]
        bg = _member(bshard.path, bkey, "bg").astype(np.int16)
        got = (batch["bg"][j].permute(1, 2, 0).numpy() * 255).round().astype(np.int16)
        if plan.bg_scale[j] == (1.0, 1.0):
            same_scale += 1
            diff = np.abs(bg[y:y + CROP, x:x + CROP] - got)
            assert diff.max() <= 3 and diff.mean() < 0.5, (key, bkey)
        else:
            assert bg.shape[0] < fg.shape[0] or bg.shape[1] < fg.shape[1]   # upscaled only when smaller
    assert 0 < same_scale < len(ld.last_keys)      # both branches of the graph's conditional ran


def test_unknown_option_is_refused(synthetic_dataset: Path) -> None:
    with pytest.raises(TypeError, match="p_combin"):
        pipeline.build_train_loader(synthetic_dataset, 2, CROP, p_combin=0.3)
    with pytest.raises(ValueError, match="probability"):
        pipeline.build_train_loader(synthetic_dataset, 2, CROP, p_hflip=1.5)


def test_a_dropped_loader_is_collected_with_its_crop_workers(synthetic_dataset: Path) -> None:
    # its helper thread once held the loader (a bound method as the thread's initializer), so no loader was ever
    # freed: its DALI graphs, threads and crop worker processes stayed until the process ended
    import gc
    import weakref

    import psutil

    before = {p.pid for p in psutil.Process().children(recursive=True)}
    loader = pipeline.build_train_loader(synthetic_dataset, 4, 64, seed=1, num_threads=2, crop_workers=1)
    next(iter(loader))
    workers = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
    ref = weakref.ref(loader)
    del loader
    gc.collect()
    assert ref() is None
    gone, alive = psutil.wait_procs(workers, timeout=15)
    assert workers and not alive
