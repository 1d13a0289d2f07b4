"""`predict`: alpha mattes for one image or a folder of images (trimaps with the same names), any size, CPU or GPU,
from a registry URI, a run URI or a checkpoint path."""
from __future__ import annotations

import logging
import time
from pathlib import Path

from tqdm import tqdm

from jobs.errors import JobError
from jobs.images import IMAGE_SUFFIXES, check_trimap, read_gray, read_rgb, write_gray

log = logging.getLogger(__name__)


def _pairs(image: Path, trimap: Path, out: Path) -> list[tuple[Path, Path, Path]]:
    if not image.exists():
        raise JobError(f"--image {image} does not exist")
    if not trimap.exists():
        raise JobError(f"--trimap {trimap} does not exist")
    if image.is_file():
        if not trimap.is_file():
            raise JobError(f"--image is a file, so --trimap must be a file too ({trimap} is a directory)")
        target = out / f"{image.stem}.png" if out.is_dir() else out.with_suffix(".png") if out.suffix == "" else out
        return [(image, trimap, target)]
    if not trimap.is_dir():
        raise JobError(f"--image is a directory, so --trimap must be a directory of same-named trimaps ({trimap})")
    if out.exists() and not out.is_dir():
        raise JobError(f"--image is a directory, so --out must be a directory ({out} is a file)")
    pairs = []
    for f in sorted(p for p in image.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        t = next((trimap / f"{f.stem}{s}" for s in IMAGE_SUFFIXES if (trimap / f"{f.stem}{s}").is_file()), None)
        if t is None:
            raise JobError(f"{f}: no trimap named {f.stem}.* in {trimap}")
        pairs.append((f, t, out / f"{f.stem}.png"))
    if not pairs:
        raise JobError(f"{image} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return pairs


def check_targets(pairs: list[tuple[Path, Path, Path]], overwrite: bool) -> None:
    """Refuse, before anything is written, an output that is one of the inputs (always) or an existing file (unless
    `overwrite`): a matte written over its photo or trimap loses the user's data."""
    inputs = {p.resolve() for img, tri, _ in pairs for p in (img, tri)}
    for img, _, target in pairs:
        if target.resolve() in inputs:
            raise JobError(f"--out would write the matte of {img} over the input file {target}: choose another --out")
    existing = [target for _, _, target in pairs if target.exists()]
    if existing and not overwrite:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise JobError(f"{existing[0]} exists{more}: pass --overwrite to replace existing mattes")


def run_predict(model: str, image: str, trimap: str, out: str, device: str = "auto",
                overwrite: bool = False) -> list[Path]:
    """Write one 8-bit alpha PNG per input image; returns the written paths. Existing files are replaced only with
    `overwrite`, and an input is never an output."""
    from model.inference import predict_alpha

    from jobs.model_uri import load_net, pick_device

    pairs = _pairs(Path(image).expanduser(), Path(trimap).expanduser(), Path(out).expanduser())
    check_targets(pairs, overwrite)
    dev = pick_device(device)
    t0 = time.time()
    net = load_net(model, dev)
    log.info("loaded %s on %s in %.1f s", model, dev, time.time() - t0)
    written = []
    for img_path, tri_path, out_path in tqdm(pairs, desc="predict", unit="img", disable=len(pairs) < 2):
        rgb = read_rgb(img_path)
        tri = check_trimap(read_gray(tri_path), tri_path)
        if rgb.shape[:2] != tri.shape:
            raise JobError(f"{img_path} is {rgb.shape[1]}x{rgb.shape[0]} but its trimap {tri_path} is "
                           f"{tri.shape[1]}x{tri.shape[0]}")
        write_gray(out_path, predict_alpha(net, rgb, tri))
        written.append(out_path)
    return written
