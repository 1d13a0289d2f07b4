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


def test_eval_loader_on_cuda(synthetic_dataset: Path) -> None:
    cpu = list(pipeline.build_eval_loader(synthetic_dataset))
    gpu = list(pipeline.build_eval_loader(synthetic_dataset, device="cuda"))
    assert [s["key"] for s in cpu] == [s["key"] for s in gpu]
    for a, b in zip(cpu, gpu):
        assert b["image"].is_cuda and torch.equal(a["alpha"], b["alpha"].cpu())
        # nvJPEG/nvImageCodec PNG decoding is lossless: same pixels as the CPU decoder
        assert torch.equal(a["image"], b["image"].cpu())


@pytest.fixture(scope="module")
def raw_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Raw-encoded shards with train composites: the encoding meant for GPU loaders (no PNG decode on the host)."""
    out = tmp_path_factory.mktemp("raw") / "ds"
    subprocess.run([sys.executable, "-m", "data_prep", "synthetic", "--out", str(out), "--count", "8", "--size", "160",
                    "--seed", "2", "--train-composites", "1", "--encoding", "raw"],
                   cwd=Path(__file__).resolve().parents[2], check=True, capture_output=True)
    return out


def test_raw_shards_on_cuda_same_pixels_as_cpu(raw_dataset: Path) -> None:
    cpu = list(pipeline.build_eval_loader(raw_dataset))
    gpu = list(pipeline.build_eval_loader(raw_dataset, device="cuda"))
    assert [s["key"] for s in cpu] == [s["key"] for s in gpu]
    for a, b in zip(cpu, gpu):
        assert b["image"].is_cuda and torch.equal(a["image"], b["image"].cpu())
        assert torch.equal(a["alpha"], b["alpha"].cpu())


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
