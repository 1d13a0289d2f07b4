"""Size-bounded WebDataset shard writing with temp names, atomic renames and DALI index files.

Each shard is written by `webdataset.TarWriter` to `.<name>.partial` (not matching `*.tar`, so neither `verify` nor a
reader globbing tars can pick it up), its DALI index is written next to it, then the tar is renamed to its final
name. A killed run therefore leaves at most one `.partial` file, which the next run deletes.
"""
from __future__ import annotations

import hashlib
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

import webdataset as wds

TAR_MTIME = 0.0  # fixed member mtime: identical input gives byte-identical tars (checksums survive re-runs)
IDX_VERSION = "v1.2"


@dataclass
class ShardRecord:
    """One completed shard as it goes into the manifest."""

    name: str
    kind: str
    samples: int
    bytes: int
    sha256: str
    plan_digest: str = ""
    tasks: int = 0  # plan entries consumed, including ones skipped as bad input (resume arithmetic)
    skipped: list | None = None  # bad inputs skipped inside this shard's plan range


    def manifest_entry(self) -> dict:
        return {"name": self.name, "kind": self.kind, "samples": self.samples, "bytes": self.bytes,
                "sha256": self.sha256, "plan_digest": self.plan_digest, "tasks": self.tasks,
                "skipped": list(self.skipped or [])}

    @classmethod
    def from_entry(cls, entry: dict) -> "ShardRecord":
        return cls(entry["name"], entry["kind"], int(entry["samples"]), int(entry["bytes"]), entry["sha256"],
                   entry.get("plan_digest", ""), int(entry.get("tasks", entry["samples"])),
                   list(entry.get("skipped", [])))


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    """Hex sha256 of a file, read in 4 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def index_path(tar_path: Path) -> Path:
    """The DALI index that belongs to a tar: same stem, `.idx`."""
    return tar_path.with_suffix(".idx")


def index_lines(tar_path: Path) -> list[str]:
    """The wds2idx (v1.2) index of a tar, from the members' data offsets.

    Same format as DALI's `wds2idx` script: header `v1.2 <samples>`, then per sample the components
    `ext offset size name` joined by spaces, where samples group consecutive members by the basename up to the
    first dot and the offset points at the member data (header block + 512).
    """
    samples: list[list[str]] = []
    last = None
    with tarfile.open(tar_path) as tf:
        for m in tf:
            if not m.isreg():
                continue
            base = m.name.rsplit("/", 1)[-1]
            dot = m.name.find(".", m.name.rfind("/") + 1)
            if not base or dot <= 0:
                continue
            stem, ext = m.name[:dot], m.name[dot + 1:]
            part = f"{ext} {m.offset_data} {m.size} {m.name}"
            if stem != last:
                samples.append([part])
                last = stem
            else:
                samples[-1].append(part)
    return [f"{IDX_VERSION} {len(samples)}"] + [" ".join(s) for s in samples]


def write_index(tar_path: Path, idx_path: Path | None = None) -> Path:
    """Write the DALI index for `tar_path` atomically and return its path."""
    idx_path = idx_path or index_path(tar_path)
    tmp = idx_path.with_name(f".{idx_path.name}.partial")
    tmp.write_text("\n".join(index_lines(tar_path)) + "\n")
    os.replace(tmp, idx_path)
    return idx_path


class RollingShardWriter:
    """Write samples of one kind into `<kind>-NNNNNN.tar` shards of at most `max_bytes` (at least one sample each).

    Like `webdataset.ShardWriter`, but every shard goes through a temp name and gets a DALI `.idx`; `on_complete`
    receives a `ShardRecord` as soon as a shard is final so the caller can journal it (resume support).
    """

    def __init__(self, out_dir: Path, kind: str, max_bytes: int, start_index: int = 0,
                 on_complete=None, max_count: int = 100_000) -> None:
        self.out_dir, self.kind = Path(out_dir), kind
        self.max_bytes, self.max_count = max_bytes, max_count
        self.index = start_index
        self.on_complete = on_complete
        self.records: list[ShardRecord] = []
        self._tw: wds.TarWriter | None = None
        self._file = None
        self._count = self._size = 0
        self._digests: list[str] = []  # plan digests of every task consumed by the open shard
        self._skipped: list[dict] = []
        #: bad inputs skipped after the last shard of this writer closed (no shard left to record them in)
        self.trailing_skipped: list[dict] = []

    @property
    def current_name(self) -> str:
        return f"{self.kind}-{self.index:06d}.tar"

    def _open(self) -> None:
        tmp = self.out_dir / f".{self.current_name}.partial"
        self._file = open(tmp, "wb")
        self._tw = wds.TarWriter(self._file, encoder=False, mtime=TAR_MTIME)
        self._count = self._size = 0

    def write(self, sample: dict, plan_digest: str) -> None:
        """Append one sample (`__key__` + encoded bytes); roll over to a new shard when the size limit is hit."""
        payload = sum(len(v) + 1024 for k, v in sample.items() if k != "__key__")  # + tar headers/padding
        if self._tw is not None and (self._size + payload > self.max_bytes or self._count >= self.max_count):
            self.finish_shard()
        if self._tw is None:
            self._open()
        self._tw.write(sample)
        self._count += 1
        self._size += payload
        self._digests.append(plan_digest)

    def skip(self, plan_digest: str, record: dict) -> None:
        """Account for a plan entry that produced no sample (bad input skipped) in the open or next shard."""
        self._digests.append(plan_digest)
        self._skipped.append(record)

    def finish_shard(self) -> ShardRecord | None:
        """Close the open shard, index it, rename it into place and report it. Skips with no shard open (the last
        entries of a kind were all bad input) move to `trailing_skipped`, so the manifest still lists them."""
        if self._tw is None:
            self.trailing_skipped += self._skipped
            self._digests, self._skipped = [], []
            return None
        self._tw.close()
        self._file.close()
        tmp = self.out_dir / f".{self.current_name}.partial"
        final = self.out_dir / self.current_name
        write_index(tmp, index_path(final))
        os.replace(tmp, final)
        rec = ShardRecord(final.name, self.kind, self._count, final.stat().st_size, sha256_file(final),
                          plan_digest_of(self._digests), len(self._digests), self._skipped)
        self._digests, self._skipped = [], []
        self.records.append(rec)
        self._tw = self._file = None
        self.index += 1
        if self.on_complete is not None:
            self.on_complete(rec)
        return rec

    def abort(self) -> None:
        """Drop the shard being written (used on errors) so nothing incomplete remains."""
        if self._tw is not None:
            try:
                self._tw.close()
                self._file.close()
            finally:
                (self.out_dir / f".{self.current_name}.partial").unlink(missing_ok=True)
                self._tw = self._file = None


def plan_digest_of(task_digests: list[str]) -> str:
    """Digest of the plan entries (task descriptors) that make up one shard, as `finish_shard` computes it."""
    return hashlib.sha256("\n".join(task_digests).encode()).hexdigest()
