"""Read samples back from shards with `tarfile` (verify, stats and tests; training reads them with DALI)."""
from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Iterator


def split_member(name: str) -> tuple[str, str]:
    """('key', 'ext') the way webdataset and DALI split: the extension starts at the basename's first dot."""
    slash = name.rfind("/")
    dot = name.find(".", slash + 1)
    if dot < 0:
        return name, ""
    return name[:dot], name[dot + 1:]


def iter_samples(tar_path: Path) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Yield (key, {ext: bytes}) for each sample, members grouped by consecutive key as writers store them."""
    key, members = None, {}
    with tarfile.open(tar_path) as tf:
        for m in tf:
            if not m.isreg():
                continue
            k, ext = split_member(m.name)
            if k != key and key is not None:
                yield key, members
                members = {}
            key = k
            f = tf.extractfile(m)
            members[ext] = f.read() if f is not None else b""
    if key is not None:
        yield key, members
