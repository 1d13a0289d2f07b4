"""Turn a plan (a list of tasks per shard kind) into shards: resume, parallel encoding, manifest.

A task is a small picklable description of one sample (which files or which synthetic index) plus a digest of
everything that decides its bytes (data_prep/tasks.py). Tasks are encoded by an executor (a local process pool,
data_prep/executors.py, or a Ray cluster, data_prep/ray_executor.py) and written in plan order by this process, so
shard boundaries and contents are the same for any executor and worker count, and identical between an
interrupted-then-resumed run and a clean one.

Encoders always produce PNG/JPEG members; with `encoding="raw"` the worker turns each image member into the `.npy`
of the pixels it decodes to (`images.to_raw_sample`), so both encodings of a dataset hold the same pixels.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from formats.encoding import DEFAULT_ENCODING, ENCODINGS

from .executors import Executor, ProcessExecutor
from .images import BadInputError
from .manifest import KINDS, MANIFEST, PROGRESS, read_state, write_manifest, write_progress
from .shard_writer import RollingShardWriter, ShardRecord, index_path, plan_digest_of, sha256_file
from .tasks import Task

log = logging.getLogger(__name__)


class DatasetExistsError(RuntimeError):
    """The output directory holds something else (other options, or unrelated files)."""


@dataclass
class BuildResult:
    samples: int
    shards: int
    bytes: int
    seconds: float
    kept_shards: int
    written_shards: int
    skipped: list[dict]
    up_to_date: bool

    def summary(self) -> str:
        state = "up to date, nothing rewritten" if self.up_to_date else (
            f"{self.written_shards} shards written, {self.kept_shards} kept from an earlier run")
        return (f"{self.samples} samples in {self.shards} shards, {self.bytes / 1e9:.3f} GB, "
                f"{self.seconds:.1f} s ({state}; {len(self.skipped)} inputs skipped)")


def _our_files(out_dir: Path) -> list[Path]:
    pats = [f"{k}-*.tar" for k in KINDS] + [f"{k}-*.idx" for k in KINDS] + [".*.partial", ".*.tmp[0-9]*"]
    files = [p for pat in pats for p in out_dir.glob(pat)]
    return files + [p for p in (out_dir / MANIFEST, out_dir / PROGRESS) if p.exists()]


def prepare_out_dir(out_dir: Path, options: dict, overwrite: bool) -> dict | None:
    """Create/inspect the output directory; return the resumable state (journal or manifest) or None."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for pattern in (".*.partial", ".*.tmp[0-9]*"):  # a killed run's temp files: never complete, safe to drop
        for p in out_dir.glob(pattern):
            p.unlink()
    if overwrite:  # before reading anything: --overwrite also replaces an unreadable manifest
        for p in _our_files(out_dir):
            p.unlink()
        return None
    state = read_state(out_dir)
    if state is not None:
        # datasets written before the encoding option existed are png
        there = {"encoding": DEFAULT_ENCODING, **state["options"]} if "encoding" in options else state["options"]
        if there != options:
            diff = sorted(k for k in set(there) | set(options) if there.get(k) != options.get(k))
            raise DatasetExistsError(
                f"{out_dir} holds a dataset made with different options ({', '.join(diff)} differ: "
                f"{ {k: there.get(k) for k in diff} } there vs { {k: options.get(k) for k in diff} } now); "
                "use another --out or pass --overwrite")
        return state
    if any(out_dir.iterdir()):
        raise DatasetExistsError(f"{out_dir} is not empty and holds no data_prep manifest; "
                                 "use an empty directory or pass --overwrite")
    return None


def _resume_kind(out_dir: Path, kind: str, tasks: list[Task], entries: list[dict]) -> tuple[list[ShardRecord], int]:
    """Keep the longest run of complete, checksum- and plan-matching shards of one kind; delete the rest."""
    kept: list[ShardRecord] = []
    pos = 0
    by_name = {e["name"]: e for e in entries if e.get("kind") == kind}
    i = 0
    while True:
        name = f"{kind}-{i:06d}.tar"
        e = by_name.get(name)
        if e is None:
            break
        rec = ShardRecord.from_entry(e)
        path = out_dir / name
        ok = (path.is_file() and index_path(path).is_file() and path.stat().st_size == rec.bytes
              and pos + rec.tasks <= len(tasks)
              and plan_digest_of([t.digest for t in tasks[pos:pos + rec.tasks]]) == rec.plan_digest
              and sha256_file(path) == rec.sha256)
        if not ok:
            log.info("%s: not reusable (missing, changed or from a different plan); rewriting from here", name)
            break
        kept.append(rec)
        pos += rec.tasks
        i += 1
    for p in list(out_dir.glob(f"{kind}-*.tar")) + list(out_dir.glob(f"{kind}-*.idx")):
        try:
            idx = int(p.stem.split("-", 1)[1])
        except ValueError:
            continue
        if idx >= len(kept):
            p.unlink()
    return kept, pos


def _all_skipped(planning: list[dict], records: list[ShardRecord]) -> list[dict]:
    """Planning-time skips plus those recorded in each shard, without duplicates (a bad background can fail
    both its own sample and the composites that use it)."""
    seen, out = set(), []
    for s in planning + [s for r in records for s in (r.skipped or [])]:
        k = (s["path"], s["problem"], s.get("kind"))
        if k not in seen:
            seen.add(k)
            out.append(s)
    return out


def build(out_dir: Path, options: dict, plan: dict[str, list[Task]], *, workers: int, shard_bytes: int,
          skip_bad: bool, overwrite: bool, planning_skipped: list[dict] | None = None,
          extra_manifest: dict | None = None, encoding: str = DEFAULT_ENCODING,
          executor: Executor | None = None,
          on_shard: Callable[[Path, ShardRecord], None] | None = None) -> BuildResult:
    """Write every kind's shards (resuming where possible), then the manifest; raise BadInputError unless skip_bad.

    Tasks are encoded by `executor` (default: a local pool of `workers` processes; `ray_executor.RayExecutor` runs
    them on a Ray cluster) and written here in plan order, so the shards are the same whichever runs them.
    `encoding` ("png" or "raw", see formats/encoding.py) decides the image members' file type; it is recorded in
    the manifest and should be part of `options` (so a directory is never resumed in another encoding).
    `on_shard(tar_path, record)` is called after each newly written shard is journalled (uploads to object storage
    hook in here, data_prep/remote_build.py)."""
    if encoding not in ENCODINGS:
        raise ValueError(f"unknown shard encoding {encoding!r} (known: {', '.join(ENCODINGS)})")
    t0 = time.time()
    out_dir = Path(out_dir)
    state = prepare_out_dir(out_dir, options, overwrite)
    entries = state["shards"] if state else []
    skipped: list[dict] = list(planning_skipped or [])
    records: list[ShardRecord] = []
    todo: list[tuple[str, list[Task], int]] = []
    for kind in KINDS:
        tasks = plan.get(kind, [])
        kept, pos = _resume_kind(out_dir, kind, tasks, entries)
        records.extend(kept)
        if pos < len(tasks):
            todo.append((kind, tasks[pos:], len(kept)))
    kept_count = len(records)
    if (not todo and state is not None and state.get("_source") == MANIFEST and (out_dir / MANIFEST).is_file()
            and state.get("skipped", []) == _all_skipped(skipped, records)):
        return BuildResult(sum(r.samples for r in records), len(records), sum(r.bytes for r in records),
                           time.time() - t0, kept_count, 0, _all_skipped(skipped, records), True)

    def journal(rec: ShardRecord) -> None:
        records.append(rec)
        write_progress(out_dir, options, [r.manifest_entry() for r in records])
        if on_shard is not None:
            on_shard(out_dir / rec.name, rec)

    write_progress(out_dir, options, [r.manifest_entry() for r in records])
    flat = [t for _, tasks, _ in todo for t in tasks]  # one pool for all kinds: workers stay warm
    starts = {kind: start for kind, _, start in todo}
    writer: RollingShardWriter | None = None
    trailing: list[dict] = []  # skips after the last shard of a kind (see RollingShardWriter.finish_shard)
    executor = executor or ProcessExecutor(workers)
    executor.start(len(flat))
    with tqdm(total=len(flat), desc="encoding", unit="sample", disable=None) as bar:
        try:
            for task, (digest, sample, bad) in zip(flat, executor.results(flat, encoding)):
                bar.update(1)
                if writer is None or writer.kind != task.kind:
                    if writer is not None:
                        writer.finish_shard()
                        trailing += writer.trailing_skipped
                    writer = RollingShardWriter(out_dir, task.kind, shard_bytes, start_index=starts[task.kind],
                                                on_complete=journal)
                if bad is not None:
                    if not skip_bad:
                        raise BadInputError(bad["path"], bad["problem"])
                    log.warning("skipping %s: %s", bad["path"], bad["problem"])
                    writer.skip(digest, bad)
                    continue
                writer.write(sample, digest)
            if writer is not None:
                writer.finish_shard()
                trailing += writer.trailing_skipped
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
        finally:
            executor.close()
    uniq = _all_skipped(skipped + trailing, records)
    write_manifest(out_dir, options, [r.manifest_entry() for r in records], uniq, extra_manifest, encoding)
    (out_dir / PROGRESS).unlink(missing_ok=True)
    return BuildResult(sum(r.samples for r in records), len(records), sum(r.bytes for r in records),
                       time.time() - t0, kept_count, len(records) - kept_count, uniq, False)
