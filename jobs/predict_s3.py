"""`predict` with s3:// images, trimaps/masks or mattes: the inputs are copied into a temporary folder, the local
`run_predict` makes the mattes there, and each matte goes up in one PUT (a reader sees no object or a whole PNG).
Object storage is only touched at these edges, through formats/object_store."""
from __future__ import annotations

import contextlib
import logging
import tempfile
from typing import Iterator
from pathlib import Path, PurePosixPath

from data_prep.trimaps import BandRadius
from formats import object_store
from formats.images import IMAGE_SUFFIXES
from jobs.errors import JobError
from jobs.inference_options import InferenceOptions

log = logging.getLogger(__name__)


def any_remote(*locations: str | None) -> bool:
    """True when one of the predict locations is an s3:// URI."""
    return any(loc is not None and object_store.is_remote(loc) for loc in locations)


def _stage(location: str, dest: Path, flag: str, sources: set[str]) -> tuple[Path, bool]:
    """(local path, is a file) for `location`: a local path as it is, an s3:// object or the images directly under an
    s3:// prefix downloaded into `dest` (their URIs added to `sources`)."""
    if not object_store.is_remote(location):
        path = Path(location).expanduser()
        return path, path.is_file()
    dest.mkdir(parents=True)
    if object_store.exists(location):
        local = dest / PurePosixPath(location).name
        object_store.download(location, local)
        sources.add(location)
        return local, True
    names = object_store.list_names(location)
    images = [n for n in names if PurePosixPath(n).suffix.lower() in IMAGE_SUFFIXES and not n.startswith(".")]
    if not names:
        raise JobError(f"{flag} {location}: no such object, and no objects under that prefix")
    if not images:
        raise JobError(f"{flag} {location} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    for name in images:
        object_store.download(object_store.join(location, name), dest / name)
        sources.add(object_store.join(location, name))
    log.info("%s: %d image(s) copied from %s", flag, len(images), location)
    return dest, False


@contextlib.contextmanager
def _named_as(copies: dict[Path, str | None]) -> Iterator[None]:
    """Errors of the local predict code name the s3:// URIs, not the temporary copies they read or wrote."""
    try:
        yield
    except JobError as exc:
        msg = str(exc)
        for local, location in copies.items():
            if location and object_store.is_remote(location):
                msg = msg.replace(f"{local}/", f"{location.rstrip('/')}/").replace(str(local), location)
        if msg == str(exc):
            raise
        raise JobError(msg) from exc


def _matte_uris(out: str, image_is_file: bool, image: Path) -> tuple[str, str]:
    """(folder URI, file name) of the matte(s) for an s3:// --out: a folder for a folder of images or a URI ending
    in '/', else the object itself (`.png` added when it has no suffix), as for a local --out."""
    if not image_is_file or out.endswith("/"):
        return out.rstrip("/"), f"{image.stem}.png"
    name = PurePosixPath(out).name
    return out[: -len(name)].rstrip("/"), name if PurePosixPath(name).suffix else f"{name}.png"


def run_predict_s3(model: str, image: str, trimap: str | None, out: str, device: str = "auto",
                   overwrite: bool = False, *, mask: str | None = None, band: BandRadius | None = None,
                   options: InferenceOptions | None = None) -> list[str]:
    """`jobs.predict.run_predict` for locations that may be s3:// URIs; returns the written mattes (URIs or
    paths). Targets are checked before any inference: an existing matte object is kept unless `overwrite`, and a
    matte is never written over an input object."""
    from jobs.predict import predict_pairs, run_predict

    if (trimap is None) == (mask is None):
        raise JobError("give exactly one of --trimap and --mask")
    flag, second = ("--trimap", trimap) if trimap is not None else ("--mask", mask)
    try:
        if object_store.is_remote(out):
            object_store.require_bucket(out)
        with tempfile.TemporaryDirectory(prefix="a2u-predict-") as tmp, _named_as(
                {Path(tmp) / "image": image, Path(tmp) / "second": second, Path(tmp) / "out": out}):
            sources: set[str] = set()
            local_image, image_is_file = _stage(image, Path(tmp) / "image", "--image", sources)
            local_second, _ = _stage(second, Path(tmp) / "second", flag, sources)  # type: ignore[arg-type]
            if not object_store.is_remote(out):
                return [str(p) for p in run_predict(model, str(local_image), str(local_second) if trimap else None,
                                                    out, device, overwrite,
                                                    mask=str(local_second) if mask else None, band=band,
                                                    options=options)]
            folder, file_name = _matte_uris(out, image_is_file, local_image)
            local_out = Path(tmp) / "out"
            local_out.mkdir()
            target = local_out / file_name if image_is_file else local_out
            pairs = predict_pairs(str(local_image), str(local_second) if trimap else None,
                                  str(local_second) if mask else None, str(target))
            uris = {p[2]: object_store.join(folder, p[2].name) for p in pairs}
            _check_remote_targets(list(uris.values()), sources, overwrite)
            written = run_predict(model, str(local_image), str(local_second) if trimap else None, str(target),
                                  device, True, mask=str(local_second) if mask else None, band=band,
                                  options=options)
            for path in written:
                object_store.write_bytes(uris[path], path.read_bytes())
            log.info("wrote %d matte(s) to %s", len(written), folder)
            return [uris[p] for p in written]
    except object_store.ObjectStoreError as exc:
        raise JobError(str(exc)) from exc


def _check_remote_targets(targets: list[str], sources: set[str], overwrite: bool) -> None:
    """Refuse a matte URI that is an input object (always) or that exists (unless `overwrite`), before inference."""
    for t in targets:
        if t in sources:
            raise JobError(f"--out would write a matte over the input object {t}: choose another --out")
    existing = [t for t in targets if object_store.exists(t)]
    if existing and not overwrite:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise JobError(f"{existing[0]} exists{more}: pass --overwrite to replace existing mattes")
