"""Crop worker processes: the training loader's crop step (`crop_step.crop_batch`) off the loader's main thread.

Why processes: the crop step is the loader's one serial per-sample step (a few CPU-ms per 512 crop, spent in Python
between small torch kernels), and threads do not spread it: they share the GIL. With `crop_workers=N` each batch's
crop step runs in one of N spawned processes, several batches at once, while the main thread keeps the geometry graph
and the finish graph fed. The batches are the same bytes as with the step in the loader's thread: the step is a pure
function of the frames and the plan's seed.

The frames travel in shared memory: the main thread copies a batch's alphas once into a reused shared buffer, which the
worker reads in place; the results come back as shared tensors (torch's multiprocessing reductions). Workers are
spawned (not forked: the parent holds DALI's threads and maybe a CUDA context) and run torch on one thread each.
They need nothing from the caller's main module, so it is not re-imported in them: spawn would otherwise re-run a
script that starts training without an `if __name__ == "__main__":` guard, and fail.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import importlib.machinery
import multiprocessing
import sys
import threading
import types
from collections.abc import Iterator, Sequence
from concurrent.futures.process import BrokenProcessPool

import torch

from .crop_step import CropBatch, crop_batch


class CropWorkerError(RuntimeError):
    """A crop worker process died (killed, or out of memory) while the loader waited for it."""


def _init_worker() -> None:
    torch.set_num_threads(1)   # one process per batch in flight: torch's own threads would only compete


def _ready() -> bool:
    return True


@contextlib.contextmanager
def _main_module_hidden() -> Iterator[None]:
    """While processes start, stand in a `__main__` that multiprocessing's spawn does not re-import in the child."""
    main = sys.modules["__main__"]
    stand_in = types.ModuleType("__main__")
    stand_in.__spec__ = importlib.machinery.ModuleSpec("__main__", None)
    sys.modules["__main__"] = stand_in
    try:
        yield
    finally:
        sys.modules["__main__"] = main


def _crop_task(buffer: torch.Tensor, shapes: Sequence[tuple[int, int]], combine: Sequence[bool],
               erosion: Sequence[tuple[int, int]], crop: int, min_unknown: int, seed: int,
               composites: bool) -> CropBatch:
    """`crop_batch` on frames packed one after another into `buffer` (first all frames1, then all frames2)."""
    frames, at = [], 0
    for h, w in shapes:
        frames.append(buffer[at:at + h * w].view(h, w))
        at += h * w
    n = len(shapes) // 2
    return crop_batch(frames[:n], frames[n:], combine, erosion, crop, min_unknown, seed, composites)


class CropPool:
    """`workers` spawned processes running `crop_batch`; `submit` returns a future of the batch's `CropBatch`."""

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"crop workers must be >= 1, got {workers}")
        self.workers = workers
        self._executor = concurrent.futures.ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker)
        self._free: list[torch.Tensor] = []     # shared frame buffers not in use
        self._lock = threading.Lock()            # `_free` is refilled from the executor's result thread
        with _main_module_hidden():              # start every worker now, while the caller builds its graphs
            for _ in range(workers):
                self._executor.submit(_ready)

    def _acquire(self, nbytes: int) -> torch.Tensor:
        """A shared uint8 buffer of at least `nbytes`: a free one that fits, else a new one (a free one too small is
        dropped, so the pool holds at most one buffer per batch in flight)."""
        with self._lock:
            by_size = sorted(range(len(self._free)), key=lambda i: self._free[i].numel())
            fits = [i for i in by_size if self._free[i].numel() >= nbytes]
            if fits:
                return self._free.pop(fits[0])
            if self._free:
                del self._free[by_size[0]]
        return torch.empty(nbytes + nbytes // 4, dtype=torch.uint8).share_memory_()

    def _release(self, buf: torch.Tensor) -> None:
        with self._lock:
            self._free.append(buf)

    def submit(self, frames1: Sequence[torch.Tensor], frames2: Sequence[torch.Tensor], combine: Sequence[bool],
               erosion: Sequence[tuple[int, int]], crop: int, min_unknown: int, seed: int,
               composites: bool) -> concurrent.futures.Future:
        """Copy the frames into shared memory (they may be DALI's buffers, reused by its next run) and queue the
        batch's crop step; the future's result is what `crop_batch` returns for the same arguments."""
        frames = [*frames1, *frames2]
        shapes = [(int(f.shape[0]), int(f.shape[1])) for f in frames]
        total = sum(h * w for h, w in shapes)
        buf = self._acquire(total)
        torch.cat([f.reshape(-1) for f in frames], out=buf[:total])
        try:
            future = self._executor.submit(_crop_task, buf[:total], shapes, list(combine), list(erosion), crop,
                                           min_unknown, seed, composites)
        except BrokenProcessPool as exc:
            raise CropWorkerError(f"a crop worker process died earlier; the loader cannot go on: {exc}") from exc
        future.add_done_callback(lambda _: self._release(buf))
        return future

    @staticmethod
    def result(future: concurrent.futures.Future) -> CropBatch:
        """The future's `CropBatch`; a dead worker becomes a `CropWorkerError` that says so."""
        try:
            return future.result()
        except BrokenProcessPool as exc:
            raise CropWorkerError(f"a crop worker process died (killed, or out of memory?): {exc}") from exc

    def close(self) -> None:
        """Stop the workers (queued steps are cancelled); the pool cannot be used afterwards."""
        try:
            self._executor.shutdown(wait=True, cancel_futures=True)
        except OSError:  # at interpreter exit concurrent.futures stops the workers first and closes their queues
            pass
        self._free.clear()
