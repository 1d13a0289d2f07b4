"""Baseline for bench_loader.py: the same A2U/GCA training recipe as a plain PyTorch DataLoader + OpenCV.

This is the conventional loader the DALI pipeline replaces (the official code's structure): every step runs on the
full-size images in DataLoader worker processes, in the spec's order (docs/model.md §4.2): combination, random resize,
affine, flip, trimap by erosion, upscale + crop around an unknown pixel, HSV jitter, composite. Sizes are scaled to
the crop like the DALI loader's (pipeline/options.py). Shard bytes are read through pipeline.dataset so both loaders
pay the same I/O, and members are decoded as the dataset's encoding says: OpenCV for png, the `.npy` reader for raw.
"""
from __future__ import annotations

import math

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from formats.encoding import decode_npy, member_names
from pipeline.dataset import Dataset as ShardDataset
from pipeline.dataset import MemberReader
from pipeline.options import AugmentOptions


def _decode(buf: np.ndarray, colour: bool, encoding: str) -> np.ndarray:
    """BGR H x W x 3 (colour) or H x W (grey) uint8 pixels of a member, as OpenCV's pipeline wants them."""
    if encoding == "raw":
        pixels = decode_npy(buf, 3 if colour else 1)
        return cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR) if colour else pixels[:, :, 0]
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR if colour else cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise ValueError("undecodable member")
    return img


class OpenCVMattingDataset(Dataset):
    """Index i -> one augmented crop (dict of CHW float tensors), recipe of docs/model.md §4.2 with OpenCV."""

    def __init__(self, dataset_dir: str, crop: int, length: int, seed: int = 0) -> None:
        ds = ShardDataset(dataset_dir)
        self.fg = ds.samples("fg")
        self.bg = ds.samples("bg")
        self.encoding = ds.encoding
        self.names = {b: member_names(b, ds.encoding) for b in ("fg", "alpha", "bg")}
        self.crop, self.length, self.seed = crop, length, seed
        self.opt = AugmentOptions()
        self.sizes = self.opt.scaled(crop)
        self.reader: MemberReader | None = None

    def __len__(self) -> int:
        return self.length

    def _load_fg(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        shard, key = self.fg[i]
        fg = _decode(self.reader.read(shard, key, self.names["fg"]), True, self.encoding)
        alpha = _decode(self.reader.read(shard, key, self.names["alpha"]), False, self.encoding)
        alpha = alpha.astype(np.float32) / 255
        return fg, alpha

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if self.reader is None:
            self.reader = MemberReader()
        rng = np.random.default_rng([self.seed, index])
        o, c = self.opt, self.crop
        fg, alpha = self._load_fg(index % len(self.fg))
        bshard, bkey = self.bg[int(rng.integers(len(self.bg)))]
        bg = _decode(self.reader.read(bshard, bkey, self.names["bg"]), True, self.encoding)
        # 1. combination and random resize
        if rng.random() < o.p_combine:
            fg2, a2 = self._load_fg(int(rng.integers(len(self.fg))))
            h, w = alpha.shape
            fg2 = cv2.resize(fg2, (w, h), interpolation=cv2.INTER_NEAREST)
            a2 = cv2.resize(a2, (w, h), interpolation=cv2.INTER_NEAREST)
            a_new = 1 - (1 - alpha) * (1 - a2)
            if np.any(a_new < 1):
                fg = (fg * alpha[..., None] + fg2 * ((1 - alpha) * a2)[..., None]) / (a_new[..., None] + 1e-5)
                fg = fg.astype(np.uint8)
                alpha = a_new
        if rng.random() < o.p_resize:
            s = self.sizes.resize
            fg = cv2.resize(fg, (s, s), interpolation=cv2.INTER_NEAREST)
            alpha = cv2.resize(alpha, (s, s), interpolation=cv2.INTER_NEAREST)
        # 2. affine about the centre, nearest, constant-0 border
        h, w = alpha.shape
        sx, sy = rng.uniform(*o.scale_range, size=2)
        shear = math.radians(rng.uniform(-o.shear_deg, o.shear_deg))
        fx, fy = np.where(rng.random(2) < o.p_affine_flip, -1.0, 1.0)
        theta = math.radians(rng.uniform(-o.rotation_deg, o.rotation_deg)) if max(h, w) >= self.sizes.rotation_min \
            else 0.0
        lin = np.array([[math.cos(theta + shear), -math.sin(theta + shear)], [math.sin(theta), math.cos(theta)]]) \
            @ np.diag([fx * sx, fy * sy])
        centre = np.array([w / 2 + 0.5, h / 2 + 0.5])
        fwd = np.hstack([lin, (centre - lin @ centre)[:, None]])
        fg = cv2.warpAffine(fg, fwd, (w, h), flags=cv2.INTER_NEAREST)
        alpha = cv2.warpAffine(alpha, fwd, (w, h), flags=cv2.INTER_NEAREST)
        # 3. horizontal flip
        if rng.random() < o.p_hflip:
            fg, alpha = cv2.flip(fg, 1), cv2.flip(alpha, 1)
        # 4. trimap by erosion with random elliptical elements
        kf, kb = rng.integers(1, self.sizes.erosion_max + 1, size=2)
        fg_def = (alpha >= 1 - 1e-5).astype(np.uint8)
        bg_def = (alpha <= 1e-5).astype(np.uint8)
        fg_def = cv2.erode(fg_def, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (int(kf), int(kf))))
        bg_def = cv2.erode(bg_def, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (int(kb), int(kb))))
        trimap = np.full(alpha.shape, 128, np.uint8)
        trimap[fg_def > 0] = 255
        trimap[bg_def > 0] = 0
        # 5. crop around an unknown pixel, upscaling small images first
        hb, wb = bg.shape[:2]
        if hb < h or wb < w:
            r = max(h / hb, w / wb)
            bg = cv2.resize(bg, (math.ceil(wb * r), math.ceil(hb * r)), interpolation=cv2.INTER_CUBIC)
        if min(h, w) <= c:
            r = o.upscale_factor * c / min(h, w)
            nh, nw = max(c + 1, int(h * r)), max(c + 1, int(w * r))
            fg = cv2.resize(fg, (nw, nh), interpolation=cv2.INTER_NEAREST)
            alpha = cv2.resize(alpha, (nw, nh), interpolation=cv2.INTER_NEAREST)
            trimap = cv2.resize(trimap, (nw, nh), interpolation=cv2.INTER_NEAREST)
            bg = cv2.resize(bg, (math.ceil(bg.shape[1] * r), math.ceil(bg.shape[0] * r)), interpolation=cv2.INTER_CUBIC)
            h, w = nh, nw
        half = c // 2
        ys, xs = np.where(trimap[half:h - half, half:w - half] == 128)
        if len(ys) == 0 and not (trimap == 128).any():
            fg = cv2.resize(fg, (c, c), interpolation=cv2.INTER_NEAREST)
            alpha = cv2.resize(alpha, (c, c), interpolation=cv2.INTER_NEAREST)
            trimap = cv2.resize(trimap, (c, c), interpolation=cv2.INTER_NEAREST)
            bg = cv2.resize(bg[:h, :w], (c, c), interpolation=cv2.INTER_CUBIC)
        else:
            if len(ys) >= o.min_unknown:
                k = int(rng.integers(len(ys)))
                top, left = int(ys[k]), int(xs[k])
            else:
                top, left = int(rng.integers(h - c + 1)), int(rng.integers(w - c + 1))
            fg, alpha = fg[top:top + c, left:left + c], alpha[top:top + c, left:left + c]
            trimap, bg = trimap[top:top + c, left:left + c], bg[top:top + c, left:left + c]
        # 6. HSV jitter of the foreground (float HSV, hue in degrees)
        if (alpha > 0).any():
            hsv = cv2.cvtColor(fg.astype(np.float32) / 255, cv2.COLOR_BGR2HSV)
            hsv[..., 0] = np.remainder(hsv[..., 0] + rng.integers(-o.hue_range, o.hue_range), 360)
            for ch in (1, 2):
                mean = float(hsv[..., ch][alpha > 0].mean())
                v = hsv[..., ch] + rng.uniform(-(1.1 - mean) / 10, (1.1 - mean) / 10)
                v = np.abs(v)
                v[v > 1] = 2 - v[v > 1]
                hsv[..., ch] = v
            fg = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR) * 255
        # 7. composite in float; 8. tensors (RGB, [0, 1])
        a = np.clip(alpha, 0, 1)[..., None]
        fgf, bgf = np.clip(fg.astype(np.float32), 0, 255), np.clip(bg.astype(np.float32), 0, 255)
        image = fgf * a + bgf * (1 - a)

        def chw(x: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(x[..., ::-1].transpose(2, 0, 1)) / 255).float()

        return {"image": chw(image), "fg": chw(fgf), "bg": chw(bgf),
                "alpha": torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))).float(),
                "trimap": torch.from_numpy(trimap[None].astype(np.float32) / 255)}


def _worker_init(_: int) -> None:
    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def build_baseline_loader(dataset_dir: str, batch_size: int, crop: int, length: int, workers: int) -> DataLoader:
    """DataLoader over OpenCVMattingDataset with `workers` single-threaded worker processes."""
    return DataLoader(OpenCVMattingDataset(dataset_dir, crop, length), batch_size=batch_size, shuffle=True,
                      num_workers=workers, drop_last=True, worker_init_fn=_worker_init,
                      persistent_workers=workers > 0)
