"""`predict`: alpha mattes for one image or a folder of images (trimaps, or coarse masks turned into trimaps by
data_prep's trimap maker, with the same names), any size, CPU or GPU, from a registry URI, a run URI or a checkpoint
path; test-time augmentation, padding and the tiling threshold are model/inference.py's options."""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from tqdm import tqdm

from data_prep.sources import InputError
from data_prep.trimap_files import check_targets as check_output_targets
from data_prep.trimaps import BandRadius, TrimapError, trimap_from_mask
from jobs.errors import JobError
from jobs.images import IMAGE_SUFFIXES, check_trimap, read_gray, read_rgb, write_gray
from jobs.inference_options import InferenceOptions

log = logging.getLogger(__name__)


def _pairs(image: Path, trimap: Path, out: Path, flag: str = "--trimap") -> list[tuple[Path, Path, Path]]:
    """(image, trimap or mask, output) triples; `flag` names the second input in messages (--trimap or --mask)."""
    what = flag.lstrip("-")
    if not image.exists():
        raise JobError(f"--image {image} does not exist")
    if not trimap.exists():
        raise JobError(f"{flag} {trimap} does not exist")
    if image.is_file():
        if not trimap.is_file():
            raise JobError(f"--image is a file, so {flag} must be a file too ({trimap} is a directory)")
        target = out / f"{image.stem}.png" if out.is_dir() else out.with_suffix(".png") if out.suffix == "" else out
        return [(image, trimap, target)]
    if not trimap.is_dir():
        raise JobError(f"--image is a directory, so {flag} must be a directory of same-named {what}s ({trimap})")
    if out.exists() and not out.is_dir():
        raise JobError(f"--image is a directory, so --out must be a directory ({out} is a file)")
    pairs = []
    for f in sorted(p for p in image.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        t = next((trimap / f"{f.stem}{s}" for s in IMAGE_SUFFIXES if (trimap / f"{f.stem}{s}").is_file()), None)
        if t is None:
            raise JobError(f"{f}: no {what} named {f.stem}.* in {trimap}")
        pairs.append((f, t, out / f"{f.stem}.png"))
    if not pairs:
        raise JobError(f"{image} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return pairs


def check_targets(pairs: list[tuple[Path, Path, Path]], overwrite: bool) -> None:
    """Refuse, before anything is written, an output that is one of the inputs (always) or an existing file (unless
    `overwrite`): a matte written over its photo or trimap loses the user's data (data_prep's check, shared with the
    trimap command)."""
    try:
        check_output_targets([(img, target) for img, _, target in pairs], overwrite, "matte",
                             other_inputs=[tri for _, tri, _ in pairs])
    except InputError as exc:
        raise JobError(str(exc)) from exc


def trimap_of_mask(mask_path: Path, band: BandRadius) -> np.ndarray:
    """The trimap made from a coarse mask file by data_prep's trimap maker; logs the band it used."""
    try:
        made = trimap_from_mask(read_gray(mask_path), band)
    except TrimapError as exc:
        raise JobError(f"mask {mask_path}: {exc}") from exc
    log.info("trimap from mask %s: unknown band %d px wide (%s)", mask_path, 2 * made.radius + 1, made.how)
    return made.trimap


def matte_of(net, img_path: Path, second_path: Path, *, from_mask: bool, band: BandRadius,
             options: InferenceOptions) -> np.ndarray:
    """The 8-bit alpha matte of one image and its trimap (or coarse mask, `from_mask`); JobError naming the file for
    an unreadable image, a bad trimap or mask, mismatched sizes or impossible inference options. The one per-image
    step of `predict`, run in this process or in Ray actors (jobs/batch_predict.py)."""
    rgb = read_rgb(img_path)
    tri = trimap_of_mask(second_path, band) if from_mask else check_trimap(read_gray(second_path), second_path)
    if rgb.shape[:2] != tri.shape:
        raise JobError(f"{img_path} is {rgb.shape[1]}x{rgb.shape[0]} but its {'mask' if from_mask else 'trimap'} "
                       f"{second_path} is {tri.shape[1]}x{tri.shape[0]}")
    try:
        return options.predict(net, rgb, tri)
    except ValueError as exc:  # e.g. a --max-pixels too small for the tile overlap, out of GPU memory
        raise JobError(f"{img_path}: {exc}") from exc


def predict_pairs(image: str, trimap: str | None, mask: str | None, out: str) -> list[tuple[Path, Path, Path]]:
    """(image, trimap or mask, matte) triples for `--image` and exactly one of `--trimap`/`--mask`."""
    if (trimap is None) == (mask is None):
        raise JobError("give exactly one of --trimap and --mask")
    flag, second = ("--trimap", trimap) if trimap is not None else ("--mask", mask)
    return _pairs(Path(image).expanduser(), Path(second).expanduser(), Path(out).expanduser(), flag)  # type: ignore[arg-type]


def run_predict(model: str, image: str, trimap: str | None, out: str, device: str = "auto",
                overwrite: bool = False, *, mask: str | None = None, band: BandRadius | None = None,
                options: InferenceOptions | None = None) -> list[Path]:
    """Write one 8-bit alpha PNG per input image; returns the written paths. Exactly one of `trimap` and `mask`
    (a coarse binary mask, made into a trimap with `band`) is given. Existing files are replaced only with
    `overwrite`, and an input is never an output."""
    from model.cpu_inference import path_for

    from jobs.model_uri import load_net, pick_device

    pairs = predict_pairs(image, trimap, mask, out)
    check_targets(pairs, overwrite)
    band = band or BandRadius()
    options = options or InferenceOptions()
    dev = pick_device(device)
    t0 = time.time()
    net = load_net(model, dev)
    log.info("loaded %s on %s in %.1f s", model, dev, time.time() - t0)
    log.info("inference path: %s", path_for(net, dev))
    log.info("inference: tta %s, pad %s, tiles above %d pixels", options.tta, options.pad, options.pixels())
    written = []
    for img_path, tri_path, out_path in tqdm(pairs, desc="predict", unit="img", disable=len(pairs) < 2):
        alpha = matte_of(net, img_path, tri_path, from_mask=mask is not None, band=band, options=options)
        write_gray(out_path, alpha)
        written.append(out_path)
    return written
