"""The same loaders on a CUDA device ("mixed" decoders, device_id = local rank); skipped without a GPU."""
from __future__ import annotations

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
