"""Where tasks are encoded: in this process, in a local fork pool, or (data_prep/ray_executor.py) on a Ray cluster.

An executor yields one result per task in plan order, whatever runs them; `build` writes shards from that stream,
so the shards do not depend on the executor or its size."""
from __future__ import annotations

import multiprocessing as mp
from functools import partial
from typing import Iterator, Protocol

from .tasks import Task, TaskResult, run_task, worker_init


class Executor(Protocol):
    """Runs `run_task` over tasks. `start` comes before the progress bar exists (a fork pool must fork before any
    helper thread starts); `results` yields in task order; `close` releases the workers (also after an error)."""

    def start(self, n_tasks: int) -> None: ...

    def results(self, tasks: list[Task], encoding: str) -> Iterator[TaskResult]: ...

    def close(self) -> None: ...


class ProcessExecutor:
    """`workers` forked processes (ordered `imap`), or inline for 1 worker or a single task."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool = None

    def start(self, n_tasks: int) -> None:
        if self.workers > 1 and n_tasks > 1:
            self._pool = mp.get_context("fork").Pool(self.workers, initializer=worker_init)

    def results(self, tasks: list[Task], encoding: str) -> Iterator[TaskResult]:
        run = partial(run_task, encoding=encoding)
        if self._pool is None:
            worker_init()
            yield from map(run, tasks)
            return
        chunk = max(1, min(8, len(tasks) // (self.workers * 8)))
        yield from self._pool.imap(run, tasks, chunksize=chunk)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None
