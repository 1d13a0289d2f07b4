"""Training batches drawn from two sources at a set ratio: composites (fg over random bg, or train-* composites) and
photos (photo-* shards: real photographs trained on as they are, never re-composited).

Each batch comes whole from one source (the two need different graphs); which one is a pure function of
(seed, epoch, batch index), the same on every rank, so all ranks step through photo and composite batches together
and a mid-epoch resume replays the same sequence.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from .loader import TrainLoader


def photo_batches(seed: int, epoch: int, iterations: int, ratio: float) -> np.ndarray:
    """Boolean mask over the epoch's batches: True where the batch comes from the photos."""
    if ratio <= 0.0:
        return np.zeros(iterations, bool)
    if ratio >= 1.0:
        return np.ones(iterations, bool)
    return np.random.default_rng([seed, epoch, 0x9407]).random(iterations) < ratio


class MixedTrainLoader:
    """`len(self)` batches per epoch, a `ratio` share of them from `photos`, the rest from `composites`.

    Both loaders must have at least `len(self)` iterations per epoch (each is asked for its next batch only when
    the draw picks it). `last_source` says where the batch yielded last came from ("photo" or "composite")."""

    def __init__(self, composites: TrainLoader, photos: TrainLoader, ratio: float, seed: int) -> None:
        if not 0.0 < ratio <= 1.0:
            raise ValueError(f"photo ratio must be in (0, 1], got {ratio}")
        if photos.batch_size != composites.batch_size or photos.crop != composites.crop:
            raise ValueError("the two sources must share batch size and crop size")
        self.composites, self.photos, self.ratio, self.seed = composites, photos, float(ratio), int(seed)
        self.iterations = composites.iterations
        if photos.iterations < self.iterations:
            raise ValueError(f"the photo loader has {photos.iterations} iterations per epoch, fewer than "
                             f"{self.iterations}")
        self.epoch, self.start_batch = 0, 0
        self.last_source = ""
        self.last_keys: list[str] = []

    def __len__(self) -> int:
        return self.iterations

    @property
    def skipped(self) -> int:
        return self.composites.skipped + self.photos.skipped

    def stage_times(self, reset: bool = False) -> dict[str, float]:
        """As TrainLoader.stage_times, summed over both sources."""
        times: dict[str, float] = {}
        for source in (self.composites, self.photos):
            for k, v in source.stage_times(reset).items():
                times[k] = times.get(k, 0.0) + v
        return times

    def close(self) -> None:
        """As TrainLoader.close, for both sources."""
        self.composites.close()
        self.photos.close()

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """As TrainLoader.set_epoch: each source resumes at its own count of batches drawn before `start_batch`."""
        if not 0 <= start_batch <= self.iterations:
            raise ValueError(f"start_batch must be in [0, {self.iterations}], got {start_batch}")
        self.epoch, self.start_batch = int(epoch), int(start_batch)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        mask = photo_batches(self.seed, self.epoch, self.iterations, self.ratio)
        before = mask[:self.start_batch]
        self.photos.set_epoch(self.epoch, int(before.sum()))
        self.composites.set_epoch(self.epoch, int((~before).sum()))
        sources = {True: (self.photos, "photo"), False: (self.composites, "composite")}
        iters: dict[bool, Iterator] = {}
        try:
            for is_photo in mask[self.start_batch:]:
                is_photo = bool(is_photo)
                if is_photo not in iters:  # started lazily: a source the epoch never draws costs nothing
                    iters[is_photo] = iter(sources[is_photo][0])
                batch = next(iters[is_photo])
                loader, self.last_source = sources[is_photo]
                self.last_keys = list(loader.last_keys)
                yield batch
        finally:
            for it in iters.values():
                it.close()
