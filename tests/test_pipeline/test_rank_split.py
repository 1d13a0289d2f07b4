"""Rank sharding: disjoint, complete per epoch, same number of iterations on every rank."""
from __future__ import annotations

from pathlib import Path

import pytest

import pipeline


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_ranks_disjoint_and_complete(synthetic_dataset: Path, world_size: int) -> None:
    all_keys = _fg_keys(synthetic_dataset)
    for epoch in (0, 1):
        seen: list[set[str]] = []
        lengths = set()
        for rank in range(world_size):
            ld = pipeline.build_train_loader(synthetic_dataset, 2, 32, rank=rank, world_size=world_size, seed=5,
                                             num_threads=1, p_combine=0, affine=False)
            ld.set_epoch(epoch)
            keys: set[str] = set()
            n = 0
            for _ in ld:
                keys.update(ld.last_keys)
                n += 1
            assert n == len(ld)
            lengths.add(len(ld))
            seen.append(keys)
        assert len(lengths) == 1                                   # DDP: identical iteration counts
        for i in range(world_size):
            for j in range(i + 1, world_size):
                assert not seen[i] & seen[j]                       # disjoint
        assert set().union(*seen) == all_keys                      # complete


def _fg_keys(dataset: Path) -> set[str]:
    from pipeline.dataset import Dataset

    return {k for _, k in Dataset(dataset).samples("fg")}


def test_rank_slices_change_between_epochs(synthetic_dataset: Path) -> None:
    ld = pipeline.build_train_loader(synthetic_dataset, 2, 32, rank=0, world_size=2, num_threads=1)
    assert set(ld.sampler.rank_slice(0)) != set(ld.sampler.rank_slice(1))
