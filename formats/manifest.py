"""The one reader of `manifest.json`, the table of contents `data_prep` writes last into a dataset directory.

Every consumer (data_prep resume/verify/stats, the pipeline's loaders, the jobs' pre-flight checks and evaluation)
calls `read_manifest`, so a manifest of an unknown format version is refused everywhere with the same message,
naming the file. Older manifests have no "encoding" field: their shards are PNG/JPEG ("png").
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .encoding import DEFAULT_ENCODING, ENCODINGS

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
REMEDY = "run `python -m data_prep synthetic --out {dir}` (or `python -m data_prep folders|composition1k ...`)"


class ManifestError(ValueError):
    """The dataset directory has no usable manifest; the message names the file and says what to do."""


@dataclass(frozen=True)
class Manifest:
    """A validated manifest: where it is, its format version, shard encoding, build options and shard entries."""

    path: Path
    format: int
    encoding: str
    options: dict
    shards: list[dict]
    skipped: list[dict] = field(default_factory=list)
    created: str | None = None

    @property
    def dir(self) -> Path:
        return self.path.parent

    def shards_of(self, *kinds: str) -> list[dict]:
        """Shard entries of the given kinds, in manifest order."""
        return [s for s in self.shards if s.get("kind") in kinds]


def read_manifest(directory: str | Path) -> Manifest:
    """Load and check `<directory>/manifest.json`; raise ManifestError naming the file (or directory) otherwise."""
    directory = Path(directory)
    path = directory / MANIFEST
    remedy = REMEDY.format(dir=directory)
    if not directory.is_dir():
        raise ManifestError(f"dataset directory {directory} does not exist; {remedy}")
    if not path.is_file():
        raise ManifestError(f"{directory} has no {MANIFEST}, so it is not a finished data_prep dataset "
                            f"(incomplete or never written); {remedy}")
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
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
