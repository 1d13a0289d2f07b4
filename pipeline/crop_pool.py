"""Crop worker processes: the training loader's crop step (`crop_step.crop_batch`) off the loader's main thread.

Why processes: the crop step is the loader's one serial per-sample step (a few CPU-ms per 512 crop, spent in Python
between small torch kernels), and threads do not spread it: they share the GIL. With `crop_workers=N` each batch's
crop step runs in one of N spawned processes, several batches at once, while the main thread keeps the geometry graph
and the finish graph fed. The batches are the same bytes as with the step in the loader's thread: the step is a pure
function of the frames and the plan's seed.

Each batch in flight owns a slot of named shared memory, mapped once in every process and reused: the main thread
copies the batch's alphas into it, the worker reads them in place and writes its results after them, and only the
slot's name, the frame shapes and the crop windows travel through the pipes. The slot goes back to the pool when the
loader has consumed the results (`CropBatch.release`).

Workers are spawned (not forked: the parent holds DALI's threads and maybe a CUDA context) and run torch on one
thread each. They need nothing from the caller's main module, so it is not re-imported in them: spawn would otherwise
re-run a script that starts training without an `if __name__ == "__main__":` guard, and fail.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import importlib.machinery
import multiprocessing
import os
import sys
import threading
import time
import types
from collections.abc import Iterator, Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing.shared_memory import SharedMemory

import torch

from .crop import CropWindow
from .crop_step import CropBatch, crop_batch

_SHM_DIR = "/dev/shm"   # where POSIX shared memory objects live on Linux (DALI's only platform)


class CropWorkerError(RuntimeError):
    """The crop workers cannot go on: a worker process died (killed, or out of memory), or shared memory is short."""


_PARENT_POLL_S = 1.0


def _init_worker(parent: int) -> None:
    """`parent`: the pool's process id, given by the parent itself (a worker still starting up when the parent dies
    would otherwise take its new parent, init, for it)."""
    torch.set_num_threads(1)   # one process per batch in flight: torch's own threads would only compete
    threading.Thread(target=_exit_with_parent, args=(parent,), name="crop-worker-parent-watch", daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    """End this worker once its parent is gone (killed, or `os._exit` as a Ray worker failure does): nothing else
    would, and while a worker lives, the parent's resource tracker keeps the shared-memory slots in /dev/shm."""
    while os.getppid() == parent:
        time.sleep(_PARENT_POLL_S)
    os._exit(0)


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


@dataclass(frozen=True)
class _Layout:
    """Byte offsets of one batch in its slot: frames, then trimaps and alphas (uint8), then weights (float32)."""

    trimaps: int
    alphas: int
    weights: int
    end: int

    @staticmethod
    def of(shapes: Sequence[tuple[int, int]], combined: int, crop: int) -> _Layout:
        n, plane = len(shapes) // 2, crop * crop

        def aligned(x: int) -> int:
            return -(-x // 64) * 64

        trimaps = aligned(sum(h * w for h, w in shapes))
        alphas = trimaps + n * plane
        weights = aligned(alphas + n * plane)
        return _Layout(trimaps, alphas, weights, weights + combined * 2 * plane * 4)

    def outputs(self, slot: torch.Tensor, n: int, combined: int, crop: int
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(trimaps, alphas, weights) as views of a slot's uint8 tensor."""
        plane = crop * crop
        return (slot[self.trimaps:self.alphas].view(n, crop, crop),
                slot[self.alphas:self.alphas + n * plane].view(n, crop, crop),
                slot[self.weights:self.end].view(torch.float32).view(combined, 2, crop, crop))


def _map(name: str, size: int) -> torch.Tensor:
    """Shared memory `name` as a uint8 tensor (unmapped when the tensor and its last view are gone)."""
    return torch.from_file(f"{_SHM_DIR}/{name}", shared=True, size=size, dtype=torch.uint8)


_attached: dict[str, torch.Tensor] = {}   # in a worker: the slots it has mapped, by name


def _slot_in_worker(name: str, size: int, live: Sequence[str]) -> torch.Tensor:
    """The named slot, mapped once; slots the pool has dropped since are unmapped here too."""
    for old in [n for n in _attached if n not in live]:
        del _attached[old]
    if name not in _attached:
        _attached[name] = _map(name, size)
    return _attached[name]


def _crop_task(name: str, size: int, live: Sequence[str], shapes: Sequence[tuple[int, int]], combine: Sequence[bool],
               erosion: Sequence[tuple[int, int]], crop: int, min_unknown: int, seed: int,
               composites: bool) -> list[CropWindow]:
    """`crop_batch` on the frames in slot `name` (all frames1, then all frames2); writes the results into the slot
    after them and returns the windows."""
    slot = _slot_in_worker(name, size, live)
    frames, at = [], 0
    for h, w in shapes:
        frames.append(slot[at:at + h * w].view(h, w))
        at += h * w
    n, combined = len(shapes) // 2, sum(bool(c) for c in combine)
    out = crop_batch(frames[:n], frames[n:], combine, erosion, crop, min_unknown, seed, composites)
    for dst, src in zip(_Layout.of(shapes, combined, crop).outputs(slot, n, combined, crop),
                        (out.trimaps, out.alphas, out.weights)):
        dst.copy_(src)
    return out.windows


def _short_of_shm(free: int, size: int, exc: OSError | None = None) -> str:
    why = f" ({exc.strerror})" if exc is not None else ""
    return (f"{_SHM_DIR} has {free / 2**20:.0f} MiB free{why}, and a crop worker slot for this batch needs "
            f"{size / 2**20:.0f} MiB (frames and results of one batch in flight per worker): give the container more "
            "shared memory (docker run --shm-size=...), or set data.crop_workers=0 (the crop step on the loader's own "
            "thread)")


class _Slot:
    """One batch's named shared memory, as the pool's process sees it. `SharedMemory` creates and names it (and
    its resource tracker removes it should this process die); the mapping is torch's, so views handed out keep it
    valid after `drop`."""

    def __init__(self, size: int) -> None:
        stat = os.statvfs(_SHM_DIR)
        free = stat.f_bavail * stat.f_frsize
        if size > free:
            raise CropWorkerError(_short_of_shm(free, size))
        shm = SharedMemory(create=True, size=size)
        # the object is sparse until written: reserve its pages now, or a write into memory that another slot (of
        # this pool or another process) took meanwhile kills the writer with SIGBUS instead of raising
        fd = os.open(f"{_SHM_DIR}/{shm.name}", os.O_RDWR)
        try:
            os.posix_fallocate(fd, 0, size)
        except OSError as exc:
            shm.close()
            shm.unlink()
            raise CropWorkerError(_short_of_shm(free, size, exc)) from exc
        finally:
            os.close(fd)
        shm.close()
        self.shm, self.size = shm, size
        self.tensor = _map(shm.name, size)

    def drop(self) -> None:
        """Remove the name; the memory goes with the last view of it."""
        self.shm.unlink()


class CropPool:
    """`workers` spawned processes running `crop_batch`; `submit` queues a batch, `result` returns its `CropBatch`."""

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"crop workers must be >= 1, got {workers}")
        self.workers = workers
        self._executor = concurrent.futures.ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker,
            initargs=(os.getpid(),))
        self._slots: list[_Slot] = []            # every live slot
        self._free: list[_Slot] = []             # live slots not owned by a batch
        self._lock = threading.Lock()            # `release` may come from the loader's helper thread
        with _main_module_hidden():              # start every worker now, while the caller builds its graphs
            for _ in range(workers):
                self._executor.submit(_ready)

    def _acquire(self, nbytes: int) -> _Slot:
        """A slot of at least `nbytes`: a free one that fits, else a new one (the smallest free one is dropped then,
        so the pool holds about one slot per batch in flight)."""
        with self._lock:
            fits = sorted((s for s in self._free if s.size >= nbytes), key=lambda s: s.size)
            if fits:
                self._free.remove(fits[0])
                return fits[0]
            if self._free:
                drop = min(self._free, key=lambda s: s.size)
                self._free.remove(drop)
                self._slots.remove(drop)
                drop.drop()
            slot = _Slot(nbytes + nbytes // 4)
            self._slots.append(slot)
            return slot

    def _release(self, slot: _Slot) -> None:
        with self._lock:
            if slot in self._slots and slot not in self._free:
                self._free.append(slot)

    def submit(self, frames1: Sequence[torch.Tensor], frames2: Sequence[torch.Tensor], combine: Sequence[bool],
               erosion: Sequence[tuple[int, int]], crop: int, min_unknown: int, seed: int,
               composites: bool) -> concurrent.futures.Future:
        """Copy the frames into a slot (they may be DALI's buffers, reused by its next run) and queue the batch's crop
        step; `result(future)` is what `crop_batch` returns for the same arguments."""
        frames = [*frames1, *frames2]
        shapes = [(int(f.shape[0]), int(f.shape[1])) for f in frames]
        combined = sum(bool(c) for c in combine)
        layout = _Layout.of(shapes, combined, crop)
        slot = self._acquire(layout.end)
        torch.cat([f.reshape(-1) for f in frames], out=slot.tensor[:sum(h * w for h, w in shapes)])
        live = [s.shm.name for s in self._slots]
        try:
            future = self._executor.submit(_crop_task, slot.shm.name, slot.size, live, shapes, list(combine), list(erosion),
                                           crop, min_unknown, seed, composites)
        except BrokenProcessPool as exc:
            self._release(slot)
            raise CropWorkerError(f"a crop worker process died earlier; the loader cannot go on: {exc}") from exc
        future.crop_pool, future.crop_slot = self, (slot, layout, len(frames1), combined, crop)
        return future

    def result(self, future: concurrent.futures.Future) -> CropBatch:
        """The batch's `CropBatch`, its tensors views of the slot until `release()` (a dead worker becomes a
        `CropWorkerError` that says so)."""
        slot, layout, n, combined, crop = future.crop_slot
        try:
            windows = future.result()
        except BrokenProcessPool as exc:
            raise CropWorkerError(f"a crop worker process died (killed, or out of memory?): {exc}") from exc
        except BaseException:
            self._release(slot)
            raise
        trimaps, alphas, weights = layout.outputs(slot.tensor, n, combined, crop)
        return CropBatch(windows, trimaps, alphas, weights, release=lambda: self._release(slot))

    def close(self) -> None:
        """Stop the workers (queued steps are cancelled) and remove the slots; the pool cannot be used afterwards."""
        try:
            self._executor.shutdown(wait=True, cancel_futures=True)
        except OSError:  # at interpreter exit concurrent.futures stops the workers first and closes their queues
            pass
        with self._lock:
            for slot in self._slots:
                slot.drop()
            self._slots, self._free = [], []
