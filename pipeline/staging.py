"""Local copies of the shards of an `s3://` dataset, for loaders that read members by offset.

The loaders read each member with one `os.pread` at the offset the DALI `.idx` gives (pipeline/dataset.py), which
needs a local file; DALI's own webdataset reader is not used. So the shards of the kinds a loader reads are
downloaded once into a cache folder, checked against the manifest (byte size and sha256), and reused by later runs
and by other ranks on the same machine while they still match (a stamp next to each verified copy spares
re-hashing an unchanged file). The cache folder is `A2U_MATTING_CACHE` if set, else
`~/.cache/a2u-matting`; shards live under `<cache>/shards/<bucket>/<prefix>/`.
"""
from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from formats import object_store

log = logging.getLogger(__name__)

CACHE_ENV = "A2U_MATTING_CACHE"


def cache_root() -> Path:
    """Where staged shards are kept (`A2U_MATTING_CACHE`, default `~/.cache/a2u-matting`)."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "a2u-matting")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _stamp(path: Path) -> Path:
    return path.with_name(f".{path.name}.verified")


def _matches(path: Path, entry: dict) -> bool:
    """True if the cached tar is the manifest's one. A verified copy leaves a stamp (sha256, size, mtime), so an
    unchanged file is not hashed again on every start."""
    if not path.is_file():
        return False
    st = path.stat()
    if st.st_size != int(entry["bytes"]):
        return False
    mark = f"{entry['sha256']} {st.st_size} {st.st_mtime_ns}"
    stamp = _stamp(path)
    if stamp.is_file() and stamp.read_text() == mark:
        return True
    if _sha256(path) != entry["sha256"]:
        return False
    stamp.write_text(mark)
    return True


def stage_shards(uri: str, entries: list[dict], error: type[Exception]) -> Path:
    """Make the tars in `entries` (manifest shard entries) and their `.idx` files present and verified under the
    cache folder of `uri`; return that folder. Raises `error` naming the object when one is missing or differs."""
    local_dir = cache_root() / "shards" / uri[len(object_store.SCHEME):].strip("/")
    local_dir.mkdir(parents=True, exist_ok=True)
    fetched = 0
    for entry in entries:
        name = entry["name"]
        tar = local_dir / name
        idx = tar.with_suffix(".idx")
        remote_tar = object_store.join(uri, name)
        if _matches(tar, entry) and idx.is_file():
            continue
        for remote, local in ((remote_tar, tar), (object_store.join(uri, idx.name), idx)):
            if not object_store.exists(remote):
                raise error(f"{remote}: listed in {object_store.join(uri, 'manifest.json')} but missing; "
                            "rerun data_prep for this dataset")
            object_store.download(remote, local)
        if not _matches(tar, entry):
            got = tar.stat().st_size
            tar.unlink()
            _stamp(tar).unlink(missing_ok=True)
            raise error(f"{remote_tar}: does not match manifest.json ({got} bytes, sha256 differs or size "
                        f"{entry['bytes']} expected); rerun data_prep for this dataset")
        fetched += 1
    if entries:
        log.info("%s: staged %d shards into %s (%d downloaded, %d reused from the cache)", uri, len(entries),
                 local_dir, fetched, len(entries) - fetched)
    return local_dir
