"""The one reader of `manifest.json`, the table of contents `data_prep` writes last into a dataset directory.

Every consumer (data_prep resume/verify/stats, the pipeline's loaders, the jobs' pre-flight checks and evaluation)
calls `read_manifest`, so a manifest of an unknown format version is refused everywhere with the same message,
naming the file. Older manifests have no "encoding" field: their shards are PNG/JPEG ("png").
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from . import object_store
from .encoding import DEFAULT_ENCODING, ENCODINGS

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
REMEDY = "run `python -m data_prep synthetic --out {dir}` (or `python -m data_prep folders|composition1k ...`)"


class ManifestError(ValueError):
    """The dataset directory has no usable manifest; the message names the file and says what to do."""


@dataclass(frozen=True)
class Manifest:
    """A validated manifest: where it is, its format version, shard encoding, build options and shard entries."""

    path: Path | str  # a str `s3://.../manifest.json` for a dataset on object storage
    format: int
    encoding: str
    options: dict
    shards: list[dict]
    skipped: list[dict] = field(default_factory=list)
    created: str | None = None

    @property
    def dir(self) -> Path | str:
        if object_store.is_remote(self.path):
            return self.path.rsplit("/", 1)[0]
        return self.path.parent

    def shards_of(self, *kinds: str) -> list[dict]:
        """Shard entries of the given kinds, in manifest order."""
        return [s for s in self.shards if s.get("kind") in kinds]


def _missing(directory: str | Path, remedy: str) -> ManifestError:
    return ManifestError(f"{directory} has no {MANIFEST}, so it is not a finished data_prep dataset "
                         f"(incomplete or never written); {remedy}")


def _read_text(directory: str | os.PathLike, remedy: str) -> tuple[Path | str, str]:
    """(manifest location, its text) from a local directory or an `s3://` prefix."""
    if object_store.is_remote(directory):
        path = object_store.join(str(directory), MANIFEST)
        try:
            data = object_store.read_bytes(path)
        except FileNotFoundError as exc:
            if not object_store.bucket_exists(str(directory)):
                raise ManifestError(f"{directory}: its bucket does not exist at "
                                    f"{os.environ.get('AWS_ENDPOINT_URL') or 'AWS'}; {remedy}") from exc
            raise _missing(directory, remedy) from exc
        except OSError as exc:
            raise ManifestError(f"{path}: cannot be read ({exc})") from exc
        try:
            return path, data.decode()
        except UnicodeDecodeError as exc:
            raise ManifestError(f"{path}: not valid JSON ({exc}); {remedy}") from exc
    directory = Path(directory)
    path = directory / MANIFEST
    if not directory.is_dir():
        raise ManifestError(f"dataset directory {directory} does not exist; {remedy}")
    if not path.is_file():
        raise _missing(directory, remedy)
    try:
        return path, path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: not valid JSON ({exc}); {remedy}") from exc


def read_manifest(directory: str | os.PathLike) -> Manifest:
    """Load and check `<directory>/manifest.json` (`directory` may be an `s3://bucket/prefix` URI, see
    formats/object_store.py); raise ManifestError naming the file (or directory) otherwise."""
    remedy = REMEDY.format(dir=directory)
    path, text = _read_text(directory, remedy)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{path}: not valid JSON ({exc}); {remedy}") from exc
    if not isinstance(doc, dict):
        raise ManifestError(f"{path}: not a manifest (a JSON {type(doc).__name__}, expected an object); {remedy}")
    version = doc.get("format")
    if version != FORMAT_VERSION:
        raise ManifestError(f"{path}: unsupported manifest format {version!r} (this code reads format "
                            f"{FORMAT_VERSION}); rewrite the dataset with this version's data_prep")
    for key, kind in (("options", dict), ("shards", list)):
        if not isinstance(doc.get(key), kind):
            raise ManifestError(f"{path}: missing or malformed {key!r} (expected a JSON "
                                f"{'object' if kind is dict else 'list'}); {remedy}")
    encoding = doc.get("encoding", DEFAULT_ENCODING)
    if encoding not in ENCODINGS:
        raise ManifestError(f"{path}: unknown shard encoding {encoding!r} (known: {', '.join(ENCODINGS)}); "
                            "rewrite the dataset with this version's data_prep")
    for i, s in enumerate(doc["shards"]):
        if not isinstance(s, dict) or not isinstance(s.get("name"), str) or not isinstance(s.get("kind"), str):
            raise ManifestError(f"{path}: shard entry {i} has no 'name'/'kind'; {remedy}")
    return Manifest(path, version, encoding, doc["options"], doc["shards"], list(doc.get("skipped", [])),
                    doc.get("created"))
