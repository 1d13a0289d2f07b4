"""`verify`: re-read every shard and check it against the manifest and the data contract.

Checks per shard: listed file exists, byte size and sha256 match, the DALI `.idx` exists and equals the index
computed from the tar, sample count matches, every member decodes, members per kind are as the contract says,
fg/alpha (and image/trimap/alpha) sizes agree, trimaps hold only 0/128/255, meta.json sizes match. Tars in the
directory that the manifest does not list are reported too (an interrupted run's leftovers).
"""
from __future__ import annotations

import json
import multiprocessing as mp
from pathlib import Path

import numpy as np

from formats.encoding import DEFAULT_ENCODING, member_name, member_names

from .images import decode
from .manifest import ManifestError, read_manifest
from .reader import iter_samples
from .shard_writer import index_lines, index_path, sha256_file

# image members (+ meta.json) per shard kind; fg shards hold exactly one of the fg member names
_IMAGES = {"fg": ("alpha",), "bg": ("bg",), "test": ("image", "trimap", "alpha"), "val": ("image", "trimap", "alpha"),
           "train": ("image", "alpha", "trimap", "fg", "bg"), "photo": ("image", "alpha", "trimap", "fg", "bg")}
_META = {"fg", "test", "val", "photo"}
KINDS = tuple(_IMAGES)


def required_members(kind: str, encoding: str) -> tuple[set[str], tuple[set[str], ...]]:
    """(members every sample of `kind` needs, alternatives of which exactly one must be present) in `encoding`."""
    required = {member_name(b, encoding) for b in _IMAGES[kind]} | ({"meta.json"} if kind in _META else set())
    one_of = tuple({n} for n in member_names("fg", encoding)) if kind == "fg" else ()
    return required, one_of


def _check_sample(kind: str, key: str, members: dict[str, bytes], encoding: str = DEFAULT_ENCODING) -> list[str]:
    problems = []
    required, one_of = required_members(kind, encoding)
    exts = set(members)
    missing = required - exts
    if one_of and not any(o <= exts for o in one_of):
        missing |= {"/".join(sorted(set().union(*one_of)))}
    if missing:
        problems.append(f"sample {key!r}: missing {sorted(missing)}")
    extra = exts - required - set().union(*one_of) if one_of else exts - required
    if extra:
        problems.append(f"sample {key!r}: unexpected members {sorted(extra)}")
    if "." in key:
        problems.append(f"sample {key!r}: key contains a dot")
    arrays: dict[str, np.ndarray] = {}
    meta = None
    for ext, data in members.items():
        try:
            if ext.endswith(".json"):
                meta = json.loads(data)
            else:
                arrays[ext] = decode(data, ext)
        except Exception as exc:  # noqa: BLE001 - any decode failure is the finding
            problems.append(f"sample {key!r}: {ext} does not decode ({exc})")
    for ext, arr in arrays.items():
        want_rgb = ext.split(".")[0] in ("fg", "bg", "image")
        if want_rgb != (arr.ndim == 3):
            problems.append(f"sample {key!r}: {ext} is {'grey' if arr.ndim == 2 else 'RGB'}, expected "
                            f"{'RGB' if want_rgb else 'grey L'}")
    sizes = {ext: a.shape[:2] for ext, a in arrays.items()}
    if len(set(sizes.values())) > 1:
        problems.append(f"sample {key!r}: member sizes disagree {({e: f'{s[1]}x{s[0]}' for e, s in sizes.items()})}")
    trimap = member_name("trimap", encoding)
    if trimap in arrays:
        vals = set(np.unique(arrays[trimap]).tolist())
        if not vals <= {0, 128, 255}:
            problems.append(f"sample {key!r}: trimap values {sorted(vals - {0, 128, 255})[:5]} not in 0/128/255")
    if meta is not None and sizes:
        h, w = next(iter(sizes.values()))
        if (meta.get("width"), meta.get("height")) != (w, h):
            problems.append(f"sample {key!r}: meta.json says {meta.get('width')}x{meta.get('height')}, "
                            f"images are {w}x{h}")
    return problems


def verify_shard(args: tuple[str, dict, str]) -> list[tuple[str, str]]:
    """All problems of one shard as (file, problem); args = (dataset dir, manifest entry, encoding)."""
    dataset_dir, entry, encoding = Path(args[0]), args[1], args[2]
    path = dataset_dir / entry["name"]
    name = str(path)
    if not path.is_file():
        return [(name, "listed in manifest.json but missing")]
    out: list[tuple[str, str]] = []
    size = path.stat().st_size
    if size != entry["bytes"]:
        out.append((name, f"size {size} bytes, manifest says {entry['bytes']} (truncated or replaced)"))
    if sha256_file(path) != entry["sha256"]:
        out.append((name, "sha256 does not match manifest.json (corrupted or replaced)"))
    kind = entry["kind"]
    if kind not in KINDS:
        return out + [(name, f"unknown shard kind {kind!r}")]
    count = 0
    try:
        for key, members in iter_samples(path):
            count += 1
            out.extend((name, p) for p in _check_sample(kind, key, members, encoding))
    except Exception as exc:  # noqa: BLE001 - tarfile errors on damaged archives
        out.append((name, f"cannot be read as a tar ({type(exc).__name__}: {exc})"))
        return out
    if count != entry["samples"]:
        out.append((name, f"{count} samples, manifest says {entry['samples']}"))
    idx = index_path(path)
    if not idx.is_file():
        out.append((str(idx), "DALI index missing"))
    else:
        try:
            ok = idx.read_text().splitlines() == index_lines(path)
        except Exception:  # noqa: BLE001
            ok = False
        if not ok:
            out.append((str(idx), "DALI index does not match the tar's members"))
    return out


def verify_dataset(dataset_dir: Path, workers: int = 1) -> list[tuple[str, str]]:
    """Every problem found, as (file, problem); empty means the dataset is sound."""
    dataset_dir = Path(dataset_dir)
    try:
        doc = read_manifest(dataset_dir)
    except ManifestError as exc:
        return [(str(dataset_dir / "manifest.json"), str(exc))]
    problems: list[tuple[str, str]] = []
    listed = {s["name"] for s in doc.shards}
    for p in sorted(dataset_dir.glob("*.tar")):
        if p.name not in listed:
            problems.append((str(p), "tar not listed in manifest.json (leftover of another run?)"))
    for p in sorted(dataset_dir.glob(".*.partial")):
        problems.append((str(p), "incomplete shard left by an interrupted run (re-run the command to finish)"))
    if not doc.shards:
        problems.append((str(dataset_dir / "manifest.json"), "manifest lists no shards"))
    for kind in ("fg", "bg"):
        if doc.shards and not any(s["kind"] == kind for s in doc.shards):
            problems.append((str(dataset_dir / "manifest.json"), f"no {kind} shards"))
    jobs = [(str(dataset_dir), e, doc.encoding) for e in doc.shards]
    if workers > 1 and len(jobs) > 1:
        with mp.get_context("fork").Pool(min(workers, len(jobs))) as pool:
            results = pool.map(verify_shard, jobs, chunksize=1)
    else:
        results = [verify_shard(j) for j in jobs]
    for r in results:
        problems.extend(r)
    return problems
