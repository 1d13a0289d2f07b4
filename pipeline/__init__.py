"""DALI data loading for A2U matting: augmented training crops and full-size evaluation samples as torch tensors."""
from __future__ import annotations

from .dataset import DatasetError
from .loader import TrainLoader
from .options import AugmentOptions


def build_train_loader(dataset_dir, batch_size: int, crop_size: int, *, rank: int = 0, world_size: int = 1,
                       device: str = "cpu", seed: int = 0, iterations_per_epoch: int | None = None,
                       num_threads: int | None = None, composites: bool = False,
                       **augment_options: object) -> TrainLoader:
    """Training loader over the fg/bg shards (or train-* composites); see pipeline/loader.py and AugmentOptions."""
    return TrainLoader(dataset_dir, batch_size, crop_size, rank=rank, world_size=world_size, device=device,
                       seed=seed, iterations_per_epoch=iterations_per_epoch, num_threads=num_threads,
                       composites=composites, **augment_options)


__all__ = ["AugmentOptions", "DatasetError", "TrainLoader", "build_train_loader"]
