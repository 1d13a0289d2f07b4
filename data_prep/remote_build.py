"""Building a dataset whose `--out` is an `s3://bucket/prefix` URI: build locally in a staging folder, upload.

The local `build` does the work (plan order, temp names, resume, manifest last) in a temporary staging folder. Each
shard is uploaded (tar, then its `.idx`) as soon as it is finished, followed by the journal
(`.data_prep_progress.json`), so a killed run can resume from what reached the bucket; `manifest.json` is uploaded
last, and only then are objects of an earlier run that the new manifest no longer lists deleted, so a reader that
lists the prefix sees either the old complete dataset or the new one.

Resuming: the remote journal (else the remote manifest) says which shards exist and their sha256. Those shards are
downloaded into the staging folder, where the local resume logic checks them exactly as it does on disk (size,
sha256, plan digest); the ones it keeps are not uploaded again. Unlike a local resume this costs one download of the
kept shards per run (object storage cannot hash an object in place).
"""
from __future__ import annotations

import json
import logging
import re
import tempfile
from pathlib import Path

from formats import object_store

from .build import BuildResult, DatasetExistsError, build
from .manifest import MANIFEST, PROGRESS
from .shard_writer import ShardRecord, index_path

log = logging.getLogger(__name__)

_OURS = re.compile(r"^(fg|bg|val|test|train|photo)-\d+\.(tar|idx)$")


def _our_names(names: list[str]) -> list[str]:
    return [n for n in names if _OURS.match(n) or n in (MANIFEST, PROGRESS)]


def _remote_state(uri: str, names: list[str]) -> tuple[str | None, dict | None]:
    """(object name, parsed document) of the remote journal, else the remote manifest, else (None, None)."""
    for name in (PROGRESS, MANIFEST):
        if name not in names:
            continue
        try:
            doc = json.loads(object_store.read_bytes(object_store.join(uri, name)))
        except (json.JSONDecodeError, UnicodeDecodeError):
            if name == PROGRESS:
                log.warning("%s: unreadable journal (torn upload?), falling back to the manifest",
                            object_store.join(uri, name))
                continue
            raise DatasetExistsError(f"{object_store.join(uri, name)}: not valid JSON; "
                                     "pass --overwrite to replace the dataset")
        if isinstance(doc, dict) and isinstance(doc.get("shards"), list):
            return name, doc
    return None, None


def _seed_staging(uri: str, names: list[str], staging: Path, state_name: str, doc: dict) -> dict[str, str]:
    """Download the state document and the shards it lists (that exist remotely) into `staging`;
    return {shard name: sha256} of what is already stored."""
    (staging / state_name).write_text(json.dumps(doc))
    stored: dict[str, str] = {}
    for entry in doc["shards"]:
        name = entry.get("name", "")
        idx = Path(name).with_suffix(".idx").name
        if name in names and idx in names:
            object_store.download(object_store.join(uri, name), staging / name)
            object_store.download(object_store.join(uri, idx), staging / idx)
            stored[name] = entry.get("sha256", "")
    log.info("%s: downloaded %d stored shards to check them for reuse", uri, len(stored))
    return stored


def build_remote(uri: str, options: dict, plan: dict, *, overwrite: bool, staging_dir: Path | None = None,
                 **build_kwargs) -> BuildResult:
    """`build` (data_prep/build.py) into the object-storage prefix `uri`; arguments as there."""
    object_store.require_bucket(uri)
    names = object_store.list_names(uri)
    if overwrite:
        for name in _our_names(names):
            object_store.delete(object_store.join(uri, name))
        names = [n for n in names if n not in _our_names(names)]
    state_name, doc = _remote_state(uri, names)
    if doc is None and names:
        raise DatasetExistsError(f"{uri} is not empty and holds no data_prep manifest; "
                                 "use an empty prefix or pass --overwrite")
    with tempfile.TemporaryDirectory(prefix="a2u-staging-", dir=staging_dir) as tmp:
        staging = Path(tmp)
        stored = _seed_staging(uri, names, staging, state_name, doc) if doc is not None else {}
        uploaded = dict(stored)

        def upload_shard(tar: Path, rec: ShardRecord) -> None:
            if uploaded.get(rec.name) != rec.sha256:
                object_store.upload(tar, object_store.join(uri, rec.name))
                object_store.upload(index_path(tar), object_store.join(uri, index_path(tar).name))
                uploaded[rec.name] = rec.sha256
                log.info("uploaded %s", object_store.join(uri, rec.name))
            object_store.upload(staging / PROGRESS, object_store.join(uri, PROGRESS))

        try:
            result = build(staging, options, plan, overwrite=False, on_shard=upload_shard, **build_kwargs)
        except DatasetExistsError as exc:
            raise DatasetExistsError(str(exc).replace(str(staging), uri)) from exc
        manifest = json.loads((staging / MANIFEST).read_text())
        listed = {s["name"] for s in manifest["shards"]}
        for s in manifest["shards"]:  # kept shards were checked against what is stored; anything else goes up now
            if uploaded.get(s["name"]) != s["sha256"]:
                tar = staging / s["name"]
                object_store.upload(tar, object_store.join(uri, s["name"]))
                object_store.upload(index_path(tar), object_store.join(uri, index_path(tar).name))
                uploaded[s["name"]] = s["sha256"]
        if not (result.up_to_date and state_name == MANIFEST):
            object_store.upload(staging / MANIFEST, object_store.join(uri, MANIFEST))  # last: the dataset is complete
        for name in _our_names(object_store.list_names(uri)):
            if name in (MANIFEST,):
                continue
            if name == PROGRESS or Path(name).with_suffix(".tar").name not in listed:
                object_store.delete(object_store.join(uri, name))
    result.written_shards = len(set(uploaded.items()) - set(stored.items()))  # here: shards uploaded
    return result


def build_at(out: str | Path, options: dict, plan: dict, **kwargs) -> BuildResult:
    """`build` into a local folder or, for an `s3://` URI, via `build_remote`."""
    if object_store.is_remote(out):
        return build_remote(str(out), options, plan, **kwargs)
    return build(Path(out), options, plan, **kwargs)
