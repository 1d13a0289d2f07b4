"""DALI data loading for A2U matting: augmented training crops and full-size evaluation samples as torch tensors."""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .dataset import DatasetError
    from .eval_loader import EvalLoader
    from .loader import TrainLoader, describe_stage_times
    from .mixed import MixedTrainLoader
    from .options import AugmentOptions

# Imported on first use, so that modules without DALI (the crop step in `crop_pool`'s worker processes, the augment
# options in `jobs.config`) load without it.
_LAZY = {"DatasetError": "dataset", "EvalLoader": "eval_loader", "TrainLoader": "loader",
         "describe_stage_times": "loader", "MixedTrainLoader": "mixed", "AugmentOptions": "options"}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value
    return value


def build_train_loader(dataset_dir, batch_size: int, crop_size: int, *, rank: int = 0, world_size: int = 1,
                       device: str = "cpu", seed: int = 0, iterations_per_epoch: int | None = None,
                       num_threads: int | None = None, composites: bool = False, photo_ratio: float = 0.0,
                       crop_workers: int = 0, **augment_options: object) -> TrainLoader | MixedTrainLoader:
    """Training loader over the fg/bg shards (or train-* composites); see pipeline/loader.py and AugmentOptions.

    `photo_ratio` > 0 mixes in batches of photo-* samples (real photos, never re-composited) at that share of the
    batches (1 = photos only); see pipeline/mixed.py. `crop_workers` > 0 runs the crop step (trimaps and crop
    windows) in that many processes (per loader: a mixed loader has two), off the loader's main thread; the batches
    are the same."""
    from .loader import TrainLoader
    from .mixed import MixedTrainLoader

    if not 0.0 <= photo_ratio <= 1.0:
        raise ValueError(f"photo_ratio must be in [0, 1], got {photo_ratio}")
    common = dict(rank=rank, world_size=world_size, device=device, seed=seed, num_threads=num_threads,
                  crop_workers=crop_workers, **augment_options)
    if photo_ratio >= 1.0:
        return TrainLoader(dataset_dir, batch_size, crop_size, iterations_per_epoch=iterations_per_epoch,
                           photos=True, **common)
    base = TrainLoader(dataset_dir, batch_size, crop_size, iterations_per_epoch=iterations_per_epoch,
                       composites=composites, **common)
    if photo_ratio <= 0.0:
        return base
    photos = TrainLoader(dataset_dir, batch_size, crop_size, iterations_per_epoch=base.iterations, photos=True,
                         **common)
    return MixedTrainLoader(base, photos, photo_ratio, seed)


def build_eval_loader(dataset_dir, *, split: str = "test", rank: int = 0, world_size: int = 1, device: str = "cpu",
                      num_threads: int | None = None, as_uint8: bool = False) -> EvalLoader:
    """Full-size test/val samples, batch 1, each exactly once across ranks; see pipeline/eval_loader.py. `as_uint8`:
    H x W x 3 / H x W uint8 numpy arrays instead of 1 x C x H x W float tensors in [0, 1]."""
    from .eval_loader import EvalLoader

    return EvalLoader(dataset_dir, split=split, rank=rank, world_size=world_size, device=device,
                      num_threads=num_threads, as_uint8=as_uint8)


__all__ = ["AugmentOptions", "DatasetError", "EvalLoader", "MixedTrainLoader", "TrainLoader", "build_eval_loader",
           "build_train_loader", "describe_stage_times"]
