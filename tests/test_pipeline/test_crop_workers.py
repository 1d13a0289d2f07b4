"""The crop step in worker processes: the same batches as in the loader's thread, a dead worker named, workers
stopped on close, and scripts without a main guard still work (spawn must not re-run them)."""
from __future__ import annotations

import concurrent.futures
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
import torch

import pipeline
from pipeline.crop_pool import CropPool, CropWorkerError
from pipeline.crop_step import crop_batch

REPO = Path(__file__).resolve().parents[2]


def _epochs(loader, epochs: int = 2) -> list[dict[str, torch.Tensor]]:
    out = []
    for e in range(epochs):
        loader.set_epoch(e)
        out += [dict(b) for b in loader]
    return out


@pytest.mark.parametrize("options", [{}, {"p_combine": 1.0}], ids=["default", "all-combined"])
def test_crop_workers_give_the_same_batches(synthetic_dataset: Path, options: dict) -> None:
    kw = dict(seed=5, num_threads=2, **options)
    in_thread = _epochs(pipeline.build_train_loader(synthetic_dataset, 4, 64, **kw))
    loader = pipeline.build_train_loader(synthetic_dataset, 4, 64, crop_workers=2, **kw)
    try:
        pooled = _epochs(loader)
        times = loader.stage_times()
    finally:
        loader.close()
    assert len(pooled) == len(in_thread) == 6
    for a, b in zip(in_thread, pooled):
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), k
    # the main thread handed the step over and waited for it; the finish graph ran on the helper thread
    assert {"geometry", "crop", "crop_wait", "feeds", "finish", "finish_wait"} <= times.keys()
    assert all(v >= 0 for v in times.values()) and times["finish"] > 0


def test_stage_times_of_the_loaders_thread_and_their_log_line(synthetic_dataset: Path) -> None:
    loader = pipeline.build_train_loader(synthetic_dataset, 4, 64, seed=2, num_threads=2)
    batches = len(list(loader))
    times = loader.stage_times(reset=True)
    assert {"geometry", "crop", "feeds", "finish", "finish_wait"} <= times.keys() and times["crop"] > 0
    assert loader.stage_times() == {}  # reset
    line = pipeline.describe_stage_times(times, batches)
    main_ms = 1000 * sum(v for k, v in times.items() if k != "finish") / batches
    assert line.startswith(f"main thread {main_ms:.1f} ms/batch (") and "crop " in line and "finish graph" in line
    assert pipeline.describe_stage_times({}, 0) == "no batches timed"


def test_pool_reuses_and_grows_its_shared_buffers() -> None:
    """Batches of different frame sizes, in any order, give what the step gives in this process."""
    gen = torch.Generator().manual_seed(0)

    def frames(n: int, h: int, w: int) -> list[torch.Tensor]:
        out = []
        for _ in range(n):
            a = torch.zeros((h, w), dtype=torch.uint8)
            a[h // 4: 3 * h // 4, w // 4: 3 * w // 4] = 255
            a[h // 4: h // 4 + 6] = torch.randint(0, 256, (6, w), generator=gen, dtype=torch.uint8)
            out.append(a)
        return out

    pool = CropPool(1)
    try:
        for n, h, w in [(2, 80, 96), (3, 160, 120), (2, 80, 96), (3, 160, 120)]:
            f1, f2 = frames(n, h, w), frames(n, h, w)
            args = ([True] + [False] * (n - 1), [(5, 9)] * n, 64, 10, 1234 + h, False)
            want = crop_batch(f1, f2, *args)
            got = pool.result(pool.submit(f1, f2, *args))
            assert got.windows == want.windows
            for name in ("trimaps", "alphas", "weights"):
                assert torch.equal(getattr(got, name), getattr(want, name)), name
            got.release()
        # one batch in flight at a time: one slot, replaced once by a larger one
        assert len(pool._slots) == len(pool._free) == 1
        names = [s.shm.name for s in pool._slots]
        assert all(Path("/dev/shm", n).exists() for n in names)
    finally:
        pool.close()
    assert not any(Path("/dev/shm", n).exists() for n in names)  # close removes the slots


def test_too_little_shared_memory_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import pipeline.crop_pool as crop_pool

    class Tiny:
        f_bavail, f_frsize = 16, 4096   # 64 KiB free

    frames = [torch.zeros((200, 200), dtype=torch.uint8)]
    pool = CropPool(1)
    try:
        monkeypatch.setattr(crop_pool.os, "statvfs", lambda path: Tiny())
        with pytest.raises(CropWorkerError, match=r"/dev/shm has 0 MiB free.*--shm-size.*data.crop_workers=0"):
            pool.submit(frames, frames, [False], [(3, 3)], 64, 10, 0, False)
    finally:
        pool.close()


def test_shared_memory_is_reserved_when_a_slot_is_made(monkeypatch: pytest.MonkeyPatch) -> None:
    # /dev/shm objects are sparse: free space checked up front can be gone by the time a worker writes its results
    import errno

    import pipeline.crop_pool as crop_pool

    def full(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    frames = [torch.zeros((200, 200), dtype=torch.uint8)]
    def slots() -> set[str]:
        return {name for name in os.listdir("/dev/shm") if name.startswith("psm_")}  # SharedMemory's names

    before = slots()
    pool = CropPool(1)
    try:
        monkeypatch.setattr(crop_pool.os, "posix_fallocate", full)
        with pytest.raises(CropWorkerError, match=r"No space left on device.*--shm-size"):
            pool.submit(frames, frames, [False], [(3, 3)], 64, 10, 0, False)
        assert slots() <= before  # the half-made slot is removed
    finally:
        pool.close()


def test_workers_end_when_their_process_is_killed(tmp_path: Path) -> None:
    # a Ray worker failure ends the training process with os._exit: its crop workers and their shared-memory slots
    # must not stay behind
    script = textwrap.dedent("""
        import os, sys, torch
        from pipeline.crop_pool import CropPool
        pool = CropPool(2)
        frames = [torch.zeros((100, 100), dtype=torch.uint8)]
        pool.result(pool.submit(frames, frames, [False], [(3, 3)], 32, 10, 0, False))
        print(" ".join(s.shm.name for s in pool._slots), flush=True)
        os._exit(17)
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 17, done.stderr[-2000:]
    slots = done.stdout.split()
    assert slots
    orphans = [p for p in psutil.process_iter(["cmdline"])
               if "spawn_main" in " ".join(p.info["cmdline"] or []) and p.ppid() == 1]
    gone, alive = psutil.wait_procs(orphans, timeout=15)
    assert not alive, [p.pid for p in alive]
    deadline = time.monotonic() + 15
    while any(os.path.exists(f"/dev/shm/{name}") for name in slots) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(os.path.exists(f"/dev/shm/{name}") for name in slots)


def _workers() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True) if "spawn" in " ".join(p.cmdline())]


def test_dead_worker_is_named_and_close_stops_workers(synthetic_dataset: Path) -> None:
    before = {p.pid for p in _workers()}
    loader = pipeline.build_train_loader(synthetic_dataset, 4, 64, seed=1, num_threads=2, crop_workers=2)
    spawned = [p for p in _workers() if p.pid not in before]
    assert len(spawned) == 2
    loader.close()
    psutil.wait_procs(spawned, timeout=10)
    assert not any(p.is_running() for p in spawned)

    loader = pipeline.build_train_loader(synthetic_dataset, 4, 64, seed=1, num_threads=2, crop_workers=1)
    try:
        it = iter(loader)
        next(it)
        for p in _workers():
            if p.pid not in before:
                os.kill(p.pid, signal.SIGKILL)
        with pytest.raises(CropWorkerError, match="crop worker process died"):
            for _ in it:
                pass
    finally:
        loader.close()


def test_closing_the_loader_during_a_pass_then_the_pass(synthetic_dataset: Path) -> None:
    """The training loop closes its loader in a `finally`, maybe before the suspended pass is collected."""
    loader = pipeline.build_train_loader(synthetic_dataset, 4, 64, seed=1, num_threads=2, crop_workers=2)
    submitted: list[concurrent.futures.Future] = []
    submit = loader._crop_pool.submit

    def recording_submit(*args):
        future = submit(*args)
        submitted.append(future)
        return future

    loader._crop_pool.submit = recording_submit
    it = iter(loader)
    next(it)
    # every crop step queued so far has finished (a step still queued would be cancelled by close(): the easy case)
    _, running = concurrent.futures.wait(submitted, timeout=120)
    assert submitted and not running
    loader.close()
    it.close()  # drains the crop steps that were in flight without raising
    assert len(list(loader)) == len(loader)  # a later pass runs the step on the loader's thread


def test_crop_workers_must_not_be_negative(synthetic_dataset: Path) -> None:
    with pytest.raises(ValueError, match="crop_workers must be >= 0"):
        pipeline.build_train_loader(synthetic_dataset, 4, 64, crop_workers=-1)


def test_a_script_without_main_guard_can_use_crop_workers(synthetic_dataset: Path, tmp_path: Path) -> None:
    """Spawned workers do not re-run the caller's script (which would build another loader, recursively)."""
    script = tmp_path / "train_script.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(REPO)!r})
        import pipeline
        loader = pipeline.build_train_loader({str(synthetic_dataset)!r}, 4, 64, num_threads=2, crop_workers=1)
        batch = next(iter(loader))
        print("batch", tuple(batch["image"].shape))
    """))
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("batch (4, 3, 64, 64)") == 1
