"""Per-batch sampling plans: which samples each rank reads and every random parameter of the recipe.

Epoch e uses one global permutation of the foregrounds (the same on every rank, from (seed, e)); rank r reads the
contiguous slice r of it (DALI's `shard_id`/`num_shards` split, here over our own order), cycled to fill exactly
`iterations * batch_size` slots. So the ranks' sample sets are disjoint, together they cover every foreground in an
epoch (when the iterations suffice), and each batch is a pure function of (seed, epoch, rank, world size, iteration).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from formats.encoding import encode_npy, member_names

from .dataset import DatasetError, MemberReader, Shard
from .imagesize import image_size
from .options import AugmentOptions


def _blank(channels: int, encoding: str) -> np.ndarray:
    """A 1 x 1 black member in `encoding` (the placeholder second foreground of uncombined samples)."""
    pixels = np.zeros((1, 1, channels), np.uint8)
    if encoding == "raw":
        return np.frombuffer(encode_npy(pixels), np.uint8)
    ok, buf = cv2.imencode(".png", pixels[:, :, 0] if channels == 1 else pixels)
    assert ok
    return buf.ravel()


class CorruptMemberError(DatasetError):
    """A member whose header cannot be read while planning a batch (before DALI sees it); names it."""

    def __init__(self, shard: Shard, key: str, member: str, problem: str) -> None:
        self.shard, self.key, self.member = str(shard.path), key, member
        super().__init__(f"{shard.path}: sample {key!r} has a corrupt {member} member ({problem}); "
                         "rerun data_prep for this directory")


@dataclass(frozen=True)
class MemberNames:
    """The member names to read for each image of a sample, and the blank placeholders, in one encoding."""

    alpha: tuple[str, ...]
    trimap: tuple[str, ...]
    fg: tuple[str, ...]
    bg: tuple[str, ...]
    image: tuple[str, ...]
    blank_alpha: np.ndarray = field(repr=False)
    blank_rgb: np.ndarray = field(repr=False)

    @classmethod
    def of(cls, encoding: str) -> "MemberNames":
        return cls(member_names("alpha", encoding), member_names("trimap", encoding), member_names("fg", encoding),
                   member_names("bg", encoding), member_names("image", encoding), _blank(1, encoding),
                   _blank(3, encoding))

    def present(self, shard: Shard, key: str, base: str) -> str:
        """The name of the member holding image `base` of a sample (e.g. 'fg.jpg'), for messages."""
        names: tuple[str, ...] = getattr(self, base)
        return next((n for n in names if n in shard.members.get(key, {})), names[0])


def _size(data: np.ndarray, source: tuple[Shard, str, str], base: str, names: MemberNames) -> tuple[int, int]:
    """(H, W) from a member's header, or CorruptMemberError naming it."""
    try:
        return image_size(data)
    except ValueError as exc:
        shard, key = source[0], source[1]
        raise CorruptMemberError(shard, key, names.present(shard, key, base), f"unreadable header: {exc}") from exc


@dataclass
class BatchPlan:
    """Everything one training batch needs before any pixel is decoded."""

    iteration: int                                   # global iteration (epoch * iterations + i)
    keys: list[str] = field(default_factory=list)    # foreground keys (the sample identities)
    sources: list[list[tuple[Shard, str, str]]] = field(default_factory=list)  # per sample: (shard, key, member)
    geometry: list[list[np.ndarray]] = field(default_factory=list)            # per input of geometry_graph
    frames: list[tuple[int, int]] = field(default_factory=list)               # augmented frame (H, W)
    frame_inv: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)  # frame -> source, fg1 / fg2
    bg_scale: list[tuple[float, float]] = field(default_factory=list)         # bg source px per frame px (y, x)
    bg_sizes: list[tuple[int, int]] = field(default_factory=list)             # bg source (H, W)
    fg_bytes: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=list)  # fg1, fg2, bg
    erosion: list[tuple[int, int]] = field(default_factory=list)
    combine: list[bool] = field(default_factory=list)
    colour: list[tuple[float, float, float]] = field(default_factory=list)   # hue, sat_u, val_u
    crop_seed: int = 0


def _homog(m: np.ndarray) -> np.ndarray:
    out = np.eye(3)
    out[:m.shape[0], :m.shape[1]] = m
    return out


class Sampler:
    """Builds the BatchPlans of one rank."""

    def __init__(self, fg: list[tuple[Shard, str]], bg: list[tuple[Shard, str]], *, batch_size: int, crop: int,
                 rank: int, world_size: int, seed: int, iterations: int, options: AugmentOptions,
                 composites: bool = False, encoding: str = "png", stored_image: bool = False) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
        if len(fg) < world_size:
            raise DatasetError(f"{len(fg)} foregrounds cannot be split over {world_size} ranks; "
                               "write more foregrounds with data_prep or use fewer ranks")
        self.fg, self.bg = fg, bg
        self.composites = composites   # fg = train-*/photo-* samples with their own bg and trimap; bg unused
        self.stored_image = stored_image  # photo-* samples: the stored image rides in the second-fg slot
        self.batch_size, self.crop, self.rank, self.world = batch_size, crop, rank, world_size
        self.seed, self.iterations, self.opt = seed, iterations, options
        self.sizes = options.scaled(crop)
        self.reader = MemberReader()
        self.names = MemberNames.of(encoding)
        self.bad: set[tuple[str, str]] = set()   # (shard path, key) skipped as corrupt
        self._slots: dict[int, np.ndarray] = {}

    @staticmethod
    def default_iterations(n_fg: int, batch_size: int, world_size: int) -> int:
        """Enough iterations for every rank to read its whole slice once."""
        return max(1, math.ceil(math.ceil(n_fg / world_size) / batch_size))

    def rank_slice(self, epoch: int) -> np.ndarray:
        """Indices (into the fg list) that this rank reads in `epoch`."""
        n = len(self.fg)
        perm = np.random.default_rng([self.seed, epoch]).permutation(n)
        lo, hi = self.rank * n // self.world, (self.rank + 1) * n // self.world
        return perm[lo:hi]

    def _epoch_slots(self, epoch: int) -> np.ndarray:
        if epoch not in self._slots:
            own = [i for i in self.rank_slice(epoch) if self._ok(self.fg[i])]
            if not own:
                raise DatasetError(f"rank {self.rank}: every foreground of its slice was skipped as corrupt")
            rng = np.random.default_rng([self.seed, epoch, self.rank, self.world, 1 << 20])
            need = self.iterations * self.batch_size
            parts = [np.asarray(own)]
            while sum(len(p) for p in parts) < need:
                parts.append(rng.permutation(own))
            self._slots = {epoch: np.concatenate(parts)[:need]}
        return self._slots[epoch]

    def _ok(self, item: tuple[Shard, str]) -> bool:
        return (str(item[0].path), item[1]) not in self.bad

    def _draw(self, rng: np.random.Generator, items: list[tuple[Shard, str]]) -> tuple[Shard, str]:
        for _ in range(1000):
            item = items[int(rng.integers(len(items)))]
            if self._ok(item):
                return item
        raise DatasetError("could not draw a sample that is not marked corrupt")

    def plan(self, iteration: int) -> BatchPlan:
        """The plan of global iteration `iteration` (= epoch * iterations + i). The random draws happen in a fixed
        order per sample (members, then geometry, then erosion and colour), so a plan is a pure function of
        (seed, epoch, rank, world size, i)."""
        epoch, i = divmod(iteration, self.iterations)
        slots = self._epoch_slots(epoch)[i * self.batch_size:(i + 1) * self.batch_size]
        rng = np.random.default_rng([self.seed, epoch, self.rank, self.world, i])
        p = BatchPlan(iteration=iteration, crop_seed=int(rng.integers(2**62)))
        p.geometry = [[] for _ in range(6)]
        for idx in slots:
            self._plan_sample(p, rng, int(idx))
        return p

    def _read_members(self, rng: np.random.Generator, idx: int):
        """Encoded members of one sample: (key, a1, f1, a2, f2, bg, sources, combine); draws the background and
        whether (and with which) second foreground it is combined."""
        names = self.names
        shard, key = self.fg[idx]
        a1 = self.reader.read(shard, key, names.alpha)
        f1 = self.reader.read(shard, key, names.fg)
        bshard, bkey = (shard, key) if self.composites else self._draw(rng, self.bg)
        bgb = self.reader.read(bshard, bkey, names.bg)
        src = [(shard, key, "alpha/fg"), (bshard, bkey, "bg")]
        combine = rng.random() < self.opt.p_combine and not self.composites
        if self.composites:
            # the stored trimap rides in the second-alpha slot and gets the same warp as the alpha
            a2, f2 = self.reader.read(shard, key, names.trimap), names.blank_rgb
            src.append((shard, key, "trimap"))
            if self.stored_image:
                f2 = self.reader.read(shard, key, names.image)
                src.append((shard, key, "image"))
        elif combine:
            s2, k2 = self._draw(rng, self.fg)
            a2, f2 = self.reader.read(s2, k2, names.alpha), self.reader.read(s2, k2, names.fg)
            src.append((s2, k2, "alpha/fg (second foreground)"))
        else:
            a2, f2 = names.blank_alpha, names.blank_rgb
        return key, a1, f1, a2, f2, bgb, src, bool(combine)

    def _frame_transform(self, rng: np.random.Generator, h1: int, w1: int) -> tuple[np.ndarray, int, int, int, int]:
        """Recipe steps 1-3 and the upscale of step 5: (source -> frame matrix, resized h, w, frame h, w)."""
        o, crop = self.opt, self.crop
        # step 1: optional square resize
        hs, ws = h1, w1
        resize = np.eye(3)
        if rng.random() < o.p_resize:
            hs = ws = self.sizes.resize
            resize = np.diag([ws / w1, hs / h1, 1.0])
        # step 2: affine about the centre (OpenCV's (W/2 + 0.5, H/2 + 0.5) in pixel-centre coordinates)
        lin = np.eye(2)
        if o.affine:
            sx, sy = rng.uniform(*o.scale_range, size=2)
            shear = np.deg2rad(rng.uniform(-o.shear_deg, o.shear_deg))
            flips = np.where(rng.random(2) < o.p_affine_flip, -1.0, 1.0)
            theta = np.deg2rad(rng.uniform(-o.rotation_deg, o.rotation_deg))
            if max(hs, ws) < self.sizes.rotation_min:
                theta = 0.0
            rs = np.array([[np.cos(theta + shear), -np.sin(theta + shear)], [np.sin(theta), np.cos(theta)]])
            lin = rs @ np.diag([flips[0] * sx, flips[1] * sy])
        c = np.array([ws / 2 + 1.0, hs / 2 + 1.0])
        affine = _homog(np.hstack([lin, (c - lin @ c)[:, None]]))
        # step 3: horizontal flip
        hflip = np.array([[-1.0, 0, ws], [0, 1, 0], [0, 0, 1]]) if rng.random() < o.p_hflip else np.eye(3)
        # step 5 (part): upscale small frames so the shorter side exceeds the crop
        hf, wf = hs, ws
        if min(hs, ws) <= crop:
            r = o.upscale_factor * crop / min(hs, ws)
            hf, wf = max(crop + 1, int(hs * r)), max(crop + 1, int(ws * r))
        up = np.diag([wf / ws, hf / hs, 1.0])
        return up @ hflip @ affine @ resize, hs, ws, hf, wf

    def _plan_sample(self, p: BatchPlan, rng: np.random.Generator, idx: int) -> None:
        """Append one sample's members, warps, background region, erosion sizes and colour draws to `p`."""
        o, names = self.opt, self.names
        key, a1, f1, a2, f2, bgb, src, combine = self._read_members(rng, idx)
        h1, w1 = _size(a1, src[0], "alpha", names)
        h2, w2 = _size(a2, src[2], "trimap" if self.composites else "alpha", names) if len(src) > 2 \
            else image_size(a2)
        hb, wb = _size(bgb, src[1], "bg", names)
        fwd1, hs, ws, hf, wf = self._frame_transform(rng, h1, w1)
        fwd2 = fwd1 if self.composites else fwd1 @ np.diag([w1 / w2, h1 / h2, 1.0])
        inv1, inv2 = np.linalg.inv(fwd1), np.linalg.inv(fwd2)
        g1 = max(1.0, hs / hb, ws / wb)  # background upscale when smaller than the foreground
        up_factor = min(hf / hs, wf / ws)
        ks = rng.integers(1, self.sizes.erosion_max + 1, size=2)
        ks = np.maximum(1, np.round(ks * up_factor)).astype(int)
        hue = float(rng.integers(-o.hue_range, o.hue_range)) if o.hsv_jitter else 0.0
        su, vu = rng.uniform(-1, 1, size=2)

        p.keys.append(key)
        p.sources.append(src)
        # the second alpha is warped to the frame only when it is used (else to one pixel, which costs nothing)
        size2 = (hf, wf) if combine or self.composites else (1, 1)
        for lst, val in zip(p.geometry, (a1, a2, inv1[:2].astype(np.float32), inv2[:2].astype(np.float32),
                                         np.array([hf, wf], np.float32), np.array(size2, np.float32))):
            lst.append(val)
        p.frames.append((hf, wf))
        p.frame_inv.append((inv1, inv2))
        p.bg_scale.append((1.0 / (g1 * hf / hs), 1.0 / (g1 * wf / ws)))
        p.bg_sizes.append((hb, wb))
        p.fg_bytes.append((f1, f2, bgb))
        p.erosion.append((int(ks[0]), int(ks[1])))
        p.combine.append(combine)
        p.colour.append((hue, float(su), float(vu)))
