"""Timing of the training loader's crop step alone, in the calling thread and in crop worker processes: shared by
`bench_loader_stages.py` (batches from a real dataset through the geometry graph) and the GPU check's `crop_workers`
step (synthetic alphas; no DALI needed)."""
from __future__ import annotations

import collections
import time
from collections.abc import Sequence

import torch

from pipeline.crop_pool import CropPool
from pipeline.crop_step import crop_batch, single_torch_thread


def time_crop_step(batches: Sequence[tuple], workers: Sequence[int]) -> list[tuple[int, float, float]]:
    """(crop workers, samples/s, CPU-ms per sample of the calling thread) over `batches` (argument tuples of
    `crop_batch`): first in the calling thread on one torch thread (0 workers), then with each number of worker
    processes, that many batches in flight. The calling thread's CPU time is the loader's serial cost of the step:
    with workers, the frames' copy into shared memory and the hand-over."""
    n = sum(len(b[0]) for b in batches)
    rows = []
    with single_torch_thread(torch.device("cpu")):
        crop_batch(*batches[0])                               # warm-up
        c0, t0 = time.thread_time(), time.perf_counter()
        for args in batches:
            crop_batch(*args)
        rows.append((0, n / (time.perf_counter() - t0), 1000 * (time.thread_time() - c0) / n))
    for w in workers:
        pool = CropPool(w)
        try:
            warm = [pool.submit(*batches[0]) for _ in range(w)]  # every worker used once, a slot per batch in flight
            for future in warm:
                pool.result(future).release()
            queue: collections.deque = collections.deque()
            c0, t0 = time.thread_time(), time.perf_counter()
            for args in batches:
                if len(queue) >= w:
                    pool.result(queue.popleft()).release()
                queue.append(pool.submit(*args))
            while queue:
                pool.result(queue.popleft()).release()
            rows.append((w, n / (time.perf_counter() - t0), 1000 * (time.thread_time() - c0) / n))
        finally:
            pool.close()
    return rows
