"""manifest.json (the dataset's table of contents) and the in-progress journal used for resuming.

The manifest is written last and atomically (temp file + rename): a directory with a manifest is complete. It is
read by `formats.manifest.read_manifest`, the one reader every package uses (re-exported here). While a run is in
progress, `.data_prep_progress.json` journals every finished shard so a killed run can resume.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path

from formats.encoding import DEFAULT_ENCODING
from formats.manifest import FORMAT_VERSION, MANIFEST, ManifestError, read_manifest  # noqa: F401 - re-exported

PROGRESS = ".data_prep_progress.json"
KINDS = ("fg", "bg", "val", "test", "train", "photo")


def _atomic_write_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def write_manifest(out_dir: Path, options: dict, shards: list[dict], skipped: list[dict],
                   extra: dict | None = None, encoding: str = DEFAULT_ENCODING) -> Path:
    """Write manifest.json atomically: {"format", "encoding", "created", "options", "shards", "skipped", ...extra}."""
    order = {k: i for i, k in enumerate(KINDS)}
    shards = sorted(shards, key=lambda s: (order.get(s["kind"], 99), s["name"]))
    doc = {"format": FORMAT_VERSION, "encoding": encoding, "created": now_iso(), "options": options, "shards": shards,
           "skipped": skipped}
    doc.update(extra or {})
    path = Path(out_dir) / MANIFEST
    _atomic_write_json(path, doc)
    return path


def write_progress(out_dir: Path, options: dict, shards: list[dict]) -> None:
    """Journal the shards finished so far (atomic, rewritten after every shard)."""
    _atomic_write_json(Path(out_dir) / PROGRESS, {"format": FORMAT_VERSION, "options": options, "shards": shards})


def read_state(out_dir: Path) -> dict | None:
    """The journal of an unfinished run, else the manifest of a finished one (read and checked by
    `read_manifest`: one of another format version raises ManifestError), else None."""
    path = Path(out_dir) / PROGRESS
    if path.is_file():
        try:
            doc = json.loads(path.read_text())
        except json.JSONDecodeError:
            doc = None  # a journal torn by a crash: fall back to the manifest, else start afresh
        if isinstance(doc, dict) and "options" in doc and "shards" in doc:
            doc["_source"] = PROGRESS
            return doc
    if (Path(out_dir) / MANIFEST).is_file():
        m = read_manifest(out_dir)
        return {"options": m.options, "shards": m.shards, "skipped": m.skipped, "_source": MANIFEST}
    return None
