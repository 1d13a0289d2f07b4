"""A local copy of a dataset stored under an `s3://` prefix, for the checks that read whole shards.

`verify` and `stats` read every member of every shard, so they run unchanged on a temporary download of the
prefix (manifest, every tar and `.idx` there, listed or not, so leftovers are still reported). Paths in what they
report are turned back into URIs by `to_uri`.
"""
from __future__ import annotations

import contextlib
import logging
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

from formats import object_store

from .manifest import MANIFEST

log = logging.getLogger(__name__)

_DATASET_FILES = re.compile(r"^([a-z]+-\d+\.(tar|idx)|manifest\.json)$")


@contextlib.contextmanager
def local_copy(uri: str) -> Iterator[Path]:
    """Download the dataset files under `uri` into a temporary folder, removed on exit."""
    names = [n for n in object_store.list_names(uri) if _DATASET_FILES.match(n)]
    with tempfile.TemporaryDirectory(prefix="a2u-remote-") as tmp:
        local = Path(tmp)
        for name in names:
            object_store.download(object_store.join(uri, name), local / name)
        log.info("%s: downloaded %d objects to %s%s", uri, len(names), local,
                 "" if MANIFEST in names else " (no manifest.json there)")
        yield local


def to_uri(text: str, local: Path, uri: str) -> str:
    """`text` with the local copy's folder replaced by the URI it came from."""
    return text.replace(str(local), uri.rstrip("/"))
