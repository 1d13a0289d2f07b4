"""Plans: the ordered list of tasks per shard kind that each command wants written.

Plans are pure functions of the options and the input listing, shuffled with the seed, so re-running a command
reproduces the same plan (which is what makes resuming and `nothing rewritten needlessly` possible).
"""
from __future__ import annotations

import random

from .build import Task, task_digest


def shuffled(tasks: list[Task], seed: int, kind: str) -> list[Task]:
    """Seeded shuffle, independent per kind, so samples of one source do not cluster in one shard."""
    rng = random.Random(f"{seed}:{kind}")
    tasks = list(tasks)
    rng.shuffle(tasks)
    return tasks


def synthetic_split_sizes(count: int, val_count: int | None, test_count: int | None) -> tuple[int, int, int]:
    """(train fgs, val fgs, test fgs, backgrounds): val/test foregrounds are extra, held-out indices."""
    val = max(2, count // 6) if val_count is None else val_count
    test = max(2, count // 4) if test_count is None else test_count
    return count, val, test


def synthetic_plan(count: int, size: int, seed: int, val_count: int | None, test_count: int | None,
                   test_composites: int, train_composites: int, val_composites: int = 2) -> dict[str, list[Task]]:
    """Synthetic dataset layout.

    Foreground indices 0..N-1 go to fg shards (training), the next V indices are the validation foregrounds and
    the next T the test foregrounds, so val/test never share a foreground with training. Backgrounds
    0..max(8, N)-1 go to bg shards; every val/test composite uses its own further background index (held out
    from bg shards too). Optional train composites put training foregrounds on training backgrounds.
    """
    n, v, t = synthetic_split_sizes(count, val_count, test_count)
    n_bg = max(8, count)
    plan: dict[str, list[Task]] = {"fg": [], "bg": [], "val": [], "test": [], "train": []}
    base = ("synthetic", seed, size)
    for i in range(n):
        plan["fg"].append(Task("fg", "synthetic_fg", (f"fg{i:06d}", seed, i, size), task_digest(*base, "fg", i)))
    for i in range(n_bg):
        plan["bg"].append(Task("bg", "synthetic_bg", (f"bg{i:06d}", seed, i, size), task_digest(*base, "bg", i)))
    held_bg = n_bg
    for kind, first, nfg, per in (("val", n, v, val_composites), ("test", n + v, t, test_composites)):
        for f in range(first, first + nfg):
            for j in range(per):
                key = f"{kind}{f:06d}_{j}"
                plan[kind].append(Task(kind, "synthetic_composite", (key, seed, f, held_bg, size, False),
                                       task_digest(*base, kind, f, held_bg)))
                held_bg += 1
    rng = random.Random(f"{seed}:train-bg")
    for i in range(n if train_composites else 0):
        for j in range(train_composites):
            b = rng.randrange(n_bg)
            plan["train"].append(Task("train", "synthetic_composite", (f"train{i:06d}_{j}", seed, i, b, size, True),
                                      task_digest(*base, "train", i, b)))
    return {k: shuffled(v_, seed, k) for k, v_ in plan.items() if v_}
