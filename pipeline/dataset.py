"""Dataset directories written by `data_prep`: manifest, shard lists, member offsets from the DALI `.idx` files.

The loaders read encoded members straight out of the tars by offset (one `os.pread` per member) and hand the bytes to
DALI's decoders, so the sample order is under our control: a global permutation per epoch, split into disjoint
contiguous rank slices (the `shard_id`/`num_shards` semantics of DALI's readers, applied to our own order).
The manifest is read by `formats.manifest.read_manifest` (pipeline/ does not import data_prep/); its encoding ("png"
or "raw") tells the graphs which decoder the members need.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from formats import object_store
from formats.manifest import REMEDY as _REMEDY
from formats.manifest import Manifest, ManifestError, read_manifest

from .staging import stage_shards

log = logging.getLogger(__name__)

SHARD_KINDS = ("fg", "bg", "test", "val", "train", "photo")


class DatasetError(ValueError):
    """A dataset directory, shard or member that the loaders cannot use; the message names it and says what to do."""


@dataclass(frozen=True)
class Member:
    """Where one member's bytes live inside a tar."""

    offset: int
    size: int


@dataclass
class Shard:
    """One tar of the dataset and its samples (key -> extension -> member), read from the DALI index."""

    path: Path
    kind: str
    keys: list[str] = field(default_factory=list)
    members: dict[str, dict[str, Member]] = field(default_factory=dict)


def _parse_index(tar: Path, idx: Path) -> tuple[list[str], dict[str, dict[str, Member]]]:
    """Read a wds2idx v1.x index: header `v1.2 N`, then one line per sample of `ext offset size name` groups."""
    lines = idx.read_text().splitlines()
    if not lines or not lines[0].startswith("v1."):
        raise DatasetError(f"{idx}: not a DALI webdataset index (header {lines[:1]!r}); "
                           f"recreate it with `wds2idx {tar} {idx}` or rerun data_prep")
    keys: list[str] = []
    members: dict[str, dict[str, Member]] = {}
    for lineno, line in enumerate(lines[1:], start=2):
        parts = line.split()
        if not parts:
            continue
        if len(parts) % 4:
            raise DatasetError(f"{idx}:{lineno}: malformed index line; recreate it with `wds2idx {tar} {idx}`")
        entry: dict[str, Member] = {}
        key = None
        for i in range(0, len(parts), 4):
            ext, off, size, name = parts[i:i + 4]
            key = Path(name).name.split(".", 1)[0]
            entry[ext] = Member(int(off), int(size))
        assert key is not None
        keys.append(key)
        members[key] = entry
    return keys, members


class Dataset:
    """A `data_prep` dataset directory (or `s3://` prefix): validated manifest plus the shards of each kind.

    For an `s3://` dataset the shards of a kind are staged into a local cache when that kind is first read
    (pipeline/staging.py); `Shard.path` is then the local copy."""

    def __init__(self, directory: str | os.PathLike) -> None:
        self.remote = object_store.is_remote(directory)
        self.dir: Path | str = str(directory).rstrip("/") if self.remote else Path(directory)
        try:
            self.manifest: Manifest = read_manifest(self.dir)
        except ManifestError as exc:
            raise DatasetError(str(exc)) from exc
        self.encoding = self.manifest.encoding
        self.shards: dict[str, list[Shard]] = {k: [] for k in SHARD_KINDS}
        for entry in self.manifest.shards:
            kind = entry.get("kind")
            if kind in self.shards:
                self.shards[kind].append(Shard(Path(entry["name"]) if self.remote else self.dir / entry["name"], kind))
        self._loaded: set[str] = set()

    def require(self, *kinds: str, remedy: str | None = None) -> None:
        """Refuse the directory unless it holds shards of every given kind."""
        missing = [k for k in kinds if not self.shards[k]]
        if missing:
            raise DatasetError(f"{self.dir}: manifest.json lists no {'/'.join(missing)} shards; "
                               + (remedy or _REMEDY.format(dir=self.dir)))

    def samples(self, kind: str) -> list[tuple[Shard, str]]:
        """Every (shard, key) of a kind, in manifest order; reads (and checks) the `.idx` of each tar once."""
        if kind not in self._loaded:
            if self.remote:
                names = {s.path.name for s in self.shards[kind]}
                where = stage_shards(self.dir, [e for e in self.manifest.shards if e["name"] in names], DatasetError)
                for shard in self.shards[kind]:
                    shard.path = where / shard.path.name
            for shard in self.shards[kind]:
                if not shard.path.is_file():
                    raise DatasetError(f"{shard.path}: listed in {self.manifest.path} but missing; "
                                       "rerun data_prep for this directory")
                idx = shard.path.with_suffix(".idx")
                if not idx.is_file():
                    raise DatasetError(f"{shard.path}: index {idx.name} is missing; create it with "
                                       f"`wds2idx {shard.path} {idx}` (data_prep writes one next to every tar)")
                shard.keys, shard.members = _parse_index(shard.path, idx)
            self._loaded.add(kind)
        return [(s, k) for s in self.shards[kind] for k in s.keys]


class MemberReader:
    """Reads encoded members by (shard, key, extension); keeps one open file descriptor per tar."""

    def __init__(self) -> None:
        self._fds: dict[Path, int] = {}

    def read(self, shard: Shard, key: str, exts: tuple[str, ...]) -> np.ndarray:
        """Bytes of the first of `exts` the sample has, as a uint8 array (what DALI's decoders take)."""
        entry = shard.members.get(key, {})
        for ext in exts:
            if ext in entry:
                m = entry[ext]
                break
        else:
            raise DatasetError(f"{shard.path}: sample {key!r} has no {' or '.join(exts)} member "
                               f"(has {sorted(entry)}); rerun data_prep for this directory")
        fd = self._fds.get(shard.path)
        if fd is None:
            fd = self._fds[shard.path] = os.open(shard.path, os.O_RDONLY)
        data = os.pread(fd, m.size, m.offset)
        if len(data) != m.size:
            raise DatasetError(f"{shard.path}: sample {key!r} member {ext} is truncated "
                               f"({len(data)} of {m.size} bytes); rerun data_prep for this directory")
        return np.frombuffer(data, dtype=np.uint8)

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass
