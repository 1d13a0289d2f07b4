"""Dataset locations on S3-compatible object storage (`s3://bucket/prefix`), through pyarrow's S3 filesystem.

Every package reaches object storage through these few functions, so the endpoint and credentials are configured in
one place, from the usual AWS variables: `AWS_ENDPOINT_URL` (any S3-compatible server, e.g. `http://127.0.0.1:9000`;
unset means AWS itself), `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN` and `AWS_DEFAULT_REGION`.
A single PUT is atomic on S3, so an object is either absent or complete; writers rely on that instead of renames.
"""
from __future__ import annotations

import functools
import logging
import os
import shutil
from pathlib import Path
from urllib.parse import urlparse

log = logging.getLogger(__name__)

SCHEME = "s3://"


class ObjectStoreError(OSError):
    """An object-storage call failed; the message names the URI and the problem."""


def is_remote(location: str | os.PathLike) -> bool:
    """True for an `s3://` URI (a str; pathlib would collapse the double slash)."""
    return isinstance(location, str) and location.startswith(SCHEME)


def join(uri: str, name: str) -> str:
    """`uri`/`name` without doubling or dropping the slash."""
    return f"{uri.rstrip('/')}/{name}"


def fs_path(uri: str) -> str:
    """The `bucket/key` path that `filesystem()` (and Ray's `storage_filesystem`) takes for an `s3://` URI."""
    return _key(uri)


def _key(uri: str) -> str:
    """The `bucket/key` path pyarrow's S3 filesystem takes for an `s3://bucket/key` URI."""
    if not is_remote(uri):
        raise ValueError(f"{uri!r} is not an s3:// URI")
    path = uri[len(SCHEME):].strip("/")
    if not path:
        raise ValueError(f"{uri!r} names no bucket")
    return path


def filesystem():
    """A pyarrow S3 filesystem for the endpoint in `AWS_ENDPOINT_URL` (credentials: the SDK's usual variables);
    one per distinct set of those variables, so a changed environment is honoured."""
    env = tuple(os.environ.get(k) for k in ("AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION", "AWS_REGION",
                                            "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"))
    return _filesystem(env)


@functools.lru_cache(maxsize=4)
def _filesystem(env: tuple):
    from pyarrow import fs

    kwargs: dict = {}
    endpoint = env[0]
    if endpoint:
        parsed = urlparse(endpoint if "://" in endpoint else f"https://{endpoint}")
        kwargs.update(endpoint_override=parsed.netloc, scheme=parsed.scheme or "https")
    region = env[1] or env[2]
    if region:
        kwargs["region"] = region
    return fs.S3FileSystem(**kwargs)


def _fail(uri: str, action: str, exc: Exception) -> ObjectStoreError:
    return ObjectStoreError(f"{uri}: {action} failed ({exc}); check AWS_ENDPOINT_URL, the credentials and the bucket")


def exists(uri: str) -> bool:
    """True if an object is stored at `uri`."""
    from pyarrow import fs

    try:
        return filesystem().get_file_info(_key(uri)).type == fs.FileType.File
    except OSError as exc:
        raise _fail(uri, "lookup", exc) from exc


def bucket_exists(uri: str) -> bool:
    """True if the bucket of `uri` exists (and the credentials may see it)."""
    from pyarrow import fs

    bucket = _key(uri).split("/", 1)[0]
    try:
        return filesystem().get_file_info(bucket).type == fs.FileType.Directory
    except OSError as exc:
        raise _fail(uri, "bucket lookup", exc) from exc


def require_bucket(uri: str) -> None:
    """Raise ObjectStoreError naming `uri` unless its bucket exists (before any work that would then be lost)."""
    if not bucket_exists(uri):
        raise ObjectStoreError(f"{uri}: bucket {_key(uri).split('/', 1)[0]!r} does not exist at "
                               f"{os.environ.get('AWS_ENDPOINT_URL') or 'AWS'}; create it first")


def size(uri: str) -> int | None:
    """Byte size of the object at `uri`, or None when there is none."""
    from pyarrow import fs

    try:
        info = filesystem().get_file_info(_key(uri))
    except OSError as exc:
        raise _fail(uri, "lookup", exc) from exc
    return info.size if info.type == fs.FileType.File else None


def list_names(uri: str) -> list[str]:
    """Names of the objects directly under the prefix `uri` (empty when there are none)."""
    from pyarrow import fs

    sel = fs.FileSelector(_key(uri), allow_not_found=True, recursive=False)
    try:
        infos = filesystem().get_file_info(sel)
    except OSError as exc:
        raise _fail(uri, "listing", exc) from exc
    return sorted(i.base_name for i in infos if i.type == fs.FileType.File)


def read_bytes(uri: str) -> bytes:
    """The whole object at `uri`; FileNotFoundError when there is none."""
    try:
        with filesystem().open_input_stream(_key(uri)) as f:
            return f.read()
    except FileNotFoundError:
        raise
    except OSError as exc:
        if "does not exist" in str(exc) or "NoSuchKey" in str(exc):
            raise FileNotFoundError(f"{uri}: no such object") from exc
        raise _fail(uri, "read", exc) from exc


def write_bytes(uri: str, data: bytes) -> None:
    """Store `data` at `uri` in one PUT (atomic: readers see the old object or the new one)."""
    try:
        with filesystem().open_output_stream(_key(uri)) as f:
            f.write(data)
    except OSError as exc:
        raise _fail(uri, "write", exc) from exc


def upload(local: Path, uri: str) -> None:
    """Copy a local file to `uri`."""
    try:
        with open(local, "rb") as src, filesystem().open_output_stream(_key(uri)) as dst:
            shutil.copyfileobj(src, dst, 1 << 22)
    except OSError as exc:
        raise _fail(uri, f"upload of {local}", exc) from exc


def download(uri: str, local: Path) -> None:
    """Copy the object at `uri` to `local` via a temp name in the same folder, renamed when complete."""
    local = Path(local)
    tmp = local.with_name(f".{local.name}.tmp{os.getpid()}")
    try:
        with filesystem().open_input_stream(_key(uri)) as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 22)
        os.replace(tmp, local)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _fail(uri, f"download to {local}", exc) from exc


def delete(uri: str) -> None:
    """Remove the object at `uri` (no error if it is already gone)."""
    try:
        filesystem().delete_file(_key(uri))
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise _fail(uri, "delete", exc) from exc
