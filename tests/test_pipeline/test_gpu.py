"""The same loaders on a CUDA device ("mixed" decoders, device_id = local rank); skipped without a GPU."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import pipeline

pytestmark = pytest.mark.gpu


def test_train_loader_on_cuda_matches_contract(synthetic_dataset: Path) -> None:
    ld = pipeline.build_train_loader(synthetic_dataset, 4, 64, device="cuda", seed=1)
    for b in ld:
        for name, t in b.items():
            assert t.is_cuda and t.dtype == torch.float32, name
        comp = b["fg"] * b["alpha"] + b["bg"] * (1 - b["alpha"])
        assert float((comp - b["image"]).abs().max()) < 1.0 / 255
        assert bool((b["alpha"][b["trimap"] == 1] == 1).all()) and bool((b["alpha"][b["trimap"] == 0] == 0).all())
        assert bool((b["trimap"][:, 0, 32, 32] == torch.tensor(128 / 255, device="cuda")).all())


def test_train_loader_on_cuda_chooses_the_cpu_loaders_crops(synthetic_dataset: Path) -> None:
    """Crop windows and trimaps are chosen on the CPU for either device: same seed, same alpha and trimap crops."""
    cpu = pipeline.build_train_loader(synthetic_dataset, 4, 64, seed=5, iterations_per_epoch=3)
    gpu = pipeline.build_train_loader(synthetic_dataset, 4, 64, device="cuda", seed=5, iterations_per_epoch=3)
    n = 0
    for a, b in zip(cpu, gpu):
        for name in ("alpha", "trimap"):
            assert b[name].is_cuda and torch.equal(a[name], b[name].cpu()), name
        n += 1
    assert n == 3


def test_eval_loader_on_cuda(synthetic_dataset: Path) -> None:
    _assert_same_samples(synthetic_dataset)


def _assert_same_samples(dataset: Path) -> None:
    """Same bytes from the GPU decoders as from the CPU ones; the float scaling may round differently (1 ulp)."""
    for as_uint8, tol in ((True, 0.0), (False, 1e-6)):
        cpu = list(pipeline.build_eval_loader(dataset, as_uint8=as_uint8))
        gpu = list(pipeline.build_eval_loader(dataset, device="cuda", as_uint8=as_uint8))
        assert [s["key"] for s in cpu] == [s["key"] for s in gpu]
        for a, b in zip(cpu, gpu):
            for name in ("image", "alpha", "trimap"):
                x, y = torch.as_tensor(a[name]), torch.as_tensor(b[name])  # as_uint8 hands numpy arrays over
                assert y.is_cuda != as_uint8 and x.dtype == y.dtype and x.shape == y.shape, name
                assert float((x.double() - y.cpu().double()).abs().max()) <= tol, (name, as_uint8)


@pytest.fixture(scope="module")
def raw_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Raw-encoded shards with train composites: the encoding meant for GPU loaders (no PNG decode on the host)."""
    out = tmp_path_factory.mktemp("raw") / "ds"
    subprocess.run([sys.executable, "-m", "data_prep", "synthetic", "--out", str(out), "--count", "8", "--size", "160",
                    "--seed", "2", "--train-composites", "1", "--encoding", "raw"],
                   cwd=Path(__file__).resolve().parents[2], check=True, capture_output=True)
    return out


def test_raw_shards_on_cuda_same_pixels_as_cpu(raw_dataset: Path) -> None:
    _assert_same_samples(raw_dataset)


@pytest.mark.parametrize("composites", [False, True])
def test_raw_train_loader_on_cuda(raw_dataset: Path, composites: bool) -> None:
    ld = pipeline.build_train_loader(raw_dataset, 4, 64, device="cuda", seed=3, composites=composites)
    n = 0
    for b in ld:
        assert all(t.is_cuda for t in b.values())
        assert tuple(b["image"].shape) == (4, 3, 64, 64)
        assert bool(torch.isfinite(b["image"]).all()) and 0 <= float(b["alpha"].min()) <= float(b["alpha"].max()) <= 1
        n += 1
    assert n > 0


@pytest.mark.parametrize("crop_workers", [0, 2])
def test_batches_hold_their_bytes_while_the_consumer_stream_lags(synthetic_dataset: Path, crop_workers: int) -> None:
    """DALI frees and reuses its output buffers in its own stream's order: batches taken while the default stream is
    far behind (a long training step queued, no host sync, as in training) must hold the bytes of batches taken with
    a sync after each one; with crop workers too (their results go up from shared memory)."""
    def batches(lag_cycles: int) -> list[dict[str, torch.Tensor]]:
        loader = pipeline.build_train_loader(synthetic_dataset, 4, 64, device="cuda", seed=7, iterations_per_epoch=6,
                                             crop_workers=crop_workers)
        kept, it = [], iter(loader)
        for _ in range(len(loader)):
            if lag_cycles:
                torch.cuda._sleep(lag_cycles)  # stands for the training step queued on the default stream
            kept.append(next(it))
            if not lag_cycles:
                torch.cuda.synchronize()
        torch.cuda.synchronize()
        loader.close()
        return [{k: v.cpu() for k, v in b.items()} for b in kept]

    synced, lagging = batches(0), batches(200_000_000)
    assert len(synced) == len(lagging) == 6
    for i, (a, b) in enumerate(zip(synced, lagging)):
        for name in a:
            assert torch.equal(a[name], b[name]), (i, name)
