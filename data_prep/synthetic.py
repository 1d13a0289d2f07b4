"""Deterministic procedural matting data: foreground objects with alpha, and backgrounds.

Foregrounds are drawn at 2x resolution and area-downsampled, so edges are anti-aliased and strands thinner than a
pixel get fractional alpha, the way real hair does. The families, chosen per index:
- people-like portraits (head, neck, shoulders, arms; hair cap with hundreds of thin strands; sometimes a veil),
- fur and plants (animal-like bodies with fur strands along the outline; stems, hard-edged leaves, grass blades),
- glass-like translucent vessels (low interior alpha, opaque rims, specular highlights),
- hard objects (polygons / rounded shapes with holes, sometimes motion- or defocus-blurred edges),
- creatures (hand-cut animal silhouettes: hard edges, thin legs, horns and tails, fine or photo texture); weight 0
  in the default mix, chosen with `--families`.
Colours are textured (two-colour fractal noise, stripes or checks, shading), so alpha edges line up with visible
colour changes against the background but are never a flat-colour threshold.

Backgrounds mix photographs bundled in the scikit-image wheel (`skimage.data`, no download) with procedural
textures (fractal noise, bokeh, stripes, tinted grey-level texture photos), randomly cropped, flipped, colour-
jittered and sometimes defocused. Everything derives from `numpy.random.default_rng([seed, stream, index])`.
"""
from __future__ import annotations

import functools
import logging
from typing import Callable

import cv2
import numpy as np

log = logging.getLogger(__name__)

SS = 2  # supersampling factor for drawing

# bundled in the scikit-image wheel (load offline); checked with skimage 0.26
_COLOUR_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry")
_GREY_PHOTOS = ("camera", "grass", "gravel", "brick", "moon", "coins", "clock", "text", "page")

FG_STREAM, BG_STREAM, SHAPE_STREAM = 1, 2, 3


# ----------------------------------------------------------------------------- helpers
def fractal_noise(rng: np.random.Generator, h: int, w: int, base: int = 4, octaves: int = 4) -> np.ndarray:
    """Value noise in [0, 1] from bicubic-upsampled random grids, octaves halving in amplitude."""
    out = np.zeros((h, w), np.float32)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        cells = base * 2 ** o
        grid = rng.random((cells + 1, cells + 1), dtype=np.float32)
        out += amp * cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
        total += amp
        amp *= 0.5
    out /= total
    lo, hi = out.min(), out.max()
    return (out - lo) / max(hi - lo, 1e-6)


def random_colour(rng: np.random.Generator, sat: tuple[float, float] = (0.2, 0.9),
                  val: tuple[float, float] = (0.2, 0.95), hue: float | None = None) -> np.ndarray:
    """An RGB colour in [0,1] drawn in HSV space."""
    h = rng.random() if hue is None else hue % 1.0
    s, v = rng.uniform(*sat), rng.uniform(*val)
    hsv = np.array([[[h * 180.0, s * 255.0, v * 255.0]]], np.float32)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32) / 255.0


def texture(rng: np.random.Generator, h: int, w: int, c1: np.ndarray | None = None,
            c2: np.ndarray | None = None, pattern: str | None = None) -> np.ndarray:
    """H x W x 3 float texture: two colours mixed by fractal noise, optional stripes/checks, shading and grain.

    Computed at half resolution and upsampled: the drawing canvas is supersampled 2x anyway, so this halves the
    cost (the generator must stay fast: the test fixture builds a dataset per session).
    """
    fh, fw = h, w
    h, w = max(2, (h + 1) // 2), max(2, (w + 1) // 2)
    c1 = random_colour(rng) if c1 is None else c1
    c2 = np.clip(c1 + rng.normal(0, 0.18, 3), 0, 1) if c2 is None else c2
    t = fractal_noise(rng, h, w, base=int(rng.integers(2, 7)))
    pattern = pattern or rng.choice(["noise", "noise", "stripes", "checks", "fine"])
    if pattern in ("stripes", "checks"):
        period = rng.uniform(0.03, 0.12) * max(h, w)
        ang = rng.uniform(0, np.pi)
        yy = np.arange(h, dtype=np.float32)[:, None]
        xx = np.arange(w, dtype=np.float32)[None, :]
        u = xx * np.cos(ang) + yy * np.sin(ang)
        s = 0.5 + 0.5 * np.sin(2 * np.pi * u / period)
        if pattern == "checks":
            v = -xx * np.sin(ang) + yy * np.cos(ang)
            s = 0.5 + 0.5 * np.sin(2 * np.pi * u / period) * np.sin(2 * np.pi * v / period)
        t = 0.35 * t + 0.65 * s
    elif pattern == "fine":
        t = 0.5 * t + 0.5 * fractal_noise(rng, h, w, base=int(rng.integers(12, 24)), octaves=2)
    img = c1[None, None, :] * (1 - t[..., None]) + c2[None, None, :] * t[..., None]
    shade = 0.75 + 0.5 * fractal_noise(rng, h, w, base=2, octaves=1)[..., None]
    img = img * shade + rng.standard_normal((h, w, 1), dtype=np.float32) * 0.015
    img = cv2.resize(np.clip(img, 0, 1).astype(np.float32), (fw, fh), interpolation=cv2.INTER_LINEAR)
    return img


def _blur(mask: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(mask, (0, 0), sigma) if sigma > 0.05 else mask


def _strands(rng: np.random.Generator, h: int, w: int, starts: np.ndarray, dirs: np.ndarray,
             length: tuple[float, float], curl: float, gravity: float, width: int = 1,
             intensity: tuple[float, float] = (0.45, 1.0)) -> np.ndarray:
    """Draw thin anti-aliased random-walk curves (hair, fur, grass) from `starts` along `dirs`; float mask [0,1]."""
    canvas = np.zeros((h, w), np.uint8)
    n = len(starts)
    steps = 12
    lens = rng.uniform(*length, n)
    ang = np.arctan2(dirs[:, 1], dirs[:, 0]) + rng.normal(0, 0.25, n)
    dang = rng.normal(0, curl, n)
    pts = np.zeros((n, steps + 1, 2), np.float32)
    pts[:, 0] = starts
    for s in range(steps):
        ang = ang + dang + rng.normal(0, curl * 0.5, n)
        # gravity bends strands towards +y
        d = np.stack([np.cos(ang), np.sin(ang) + gravity * s / steps], 1)
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        pts[:, s + 1] = pts[:, s] + d * (lens / steps)[:, None]
    vals = (rng.uniform(*intensity, n) * 255).astype(int)
    # group by quantised intensity so cv2 draws many polylines per call
    for level in np.unique(vals // 32):
        sel = (vals // 32) == level
        polys = [np.round(p * 16).astype(np.int32) for p in pts[sel]]  # 4 fractional bits
        cur = np.zeros_like(canvas)
        cv2.polylines(cur, polys, False, int(min(255, level * 32 + 16)), width, cv2.LINE_AA, shift=4)
        np.maximum(canvas, cur, out=canvas)
    return canvas.astype(np.float32) / 255.0


def _outline_points(mask: np.ndarray, rng: np.random.Generator, n: int,
                    keep: Callable[[np.ndarray], np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Sample `n` points on a binary mask's outer contour with outward normals."""
    cnts, _ = cv2.findContours((mask > 0.5).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not cnts:
        return np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32)
    c = max(cnts, key=len)[:, 0, :].astype(np.float32)
    if keep is not None:
        c = c[keep(c)]
    if len(c) < 3:
        return np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32)
    idx = rng.integers(0, len(c), n)
    p = c[idx]
    tang = c[(idx + 3) % len(c)] - c[(idx - 3) % len(c)]
    normal = np.stack([tang[:, 1], -tang[:, 0]], 1)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True) + 1e-6
    # make normals point outward: step along the normal should leave the mask
    probe = np.clip(np.round(p + normal * 4), 0, [mask.shape[1] - 1, mask.shape[0] - 1]).astype(int)
    inside = mask[probe[:, 1], probe[:, 0]] > 0.5
    normal[inside] *= -1
    return p + rng.normal(0, 1.5, p.shape).astype(np.float32) - normal * 2, normal


def _bezier(p0, p1, p2, n: int = 24) -> np.ndarray:
    """Points on a quadratic Bezier curve (smooth outlines for shoulders and hair)."""
    t = np.linspace(0, 1, n)[:, None]
    p0, p1, p2 = (np.asarray(p, np.float64) for p in (p0, p1, p2))
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t ** 2 * p2


def _lerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """a * (1 - t) + b * t per pixel (t is H x W), via OpenCV's blendLinear: ~5x faster than numpy broadcasting."""
    a = np.ascontiguousarray(a, np.float32)
    b = np.ascontiguousarray(np.broadcast_to(b, a.shape), np.float32)
    t = np.ascontiguousarray(np.clip(t, 0, 1), np.float32)
    return cv2.blendLinear(a, b, 1.0 - t, t)


# ----------------------------------------------------------------------------- foreground families
def _person(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Head-and-shoulders portrait with hair strands; the body runs off the bottom edge as in portrait mattes."""
    s = min(h, w)
    cx = w * rng.uniform(0.4, 0.6)
    r = s * rng.uniform(0.12, 0.17)
    hy = h * rng.uniform(0.25, 0.36)
    body = np.zeros((h, w), np.float32)
    head_ax = (int(r * rng.uniform(0.78, 0.9)), int(r))
    tilt = rng.uniform(-12, 12)
    cv2.ellipse(body, (int(cx), int(hy)), head_ax, tilt, 0, 360, 1.0, -1, cv2.LINE_AA)
    neck_w = r * rng.uniform(0.38, 0.5)
    sh_y = hy + r * rng.uniform(1.35, 1.6)
    cv2.rectangle(body, (int(cx - neck_w), int(hy + r * 0.5)), (int(cx + neck_w), int(sh_y + r * 0.3)), 1.0, -1)
    sh_w = r * rng.uniform(2.2, 3.1)
    flare = r * rng.uniform(0.0, 0.5)
    right = np.concatenate([  # neck base -> rounded shoulder (quadratic Bezier) -> arm side down to the frame edge
        _bezier((cx + neck_w * 1.1, sh_y - r * 0.2), (cx + sh_w * 0.95, sh_y - r * 0.3), (cx + sh_w, sh_y + r * 0.8)),
        _bezier((cx + sh_w, sh_y + r * 0.8), (cx + sh_w * 1.04, sh_y + r * 2.0), (cx + sh_w + flare, h + 5))[1:]])
    left = right.copy()
    left[:, 0] = 2 * cx - left[:, 0]
    torso = np.concatenate([right, left[::-1]]).astype(np.float32)
    cv2.fillPoly(body, [np.round(torso * 16).astype(np.int32)], 1.0, cv2.LINE_AA, shift=4)
    if rng.random() < 0.5:  # arms held slightly away from the body leave background gaps near the waist
        for side in (-1, 1):
            ax = int(cx + side * (sh_w + flare * 0.5 + r * 0.5))
            cv2.ellipse(body, (ax, int(sh_y + r * 2.6)), (int(r * 0.45), int(r * 2.0)), side * -6, 0, 360, 1.0, -1,
                        cv2.LINE_AA)
    body = _blur(body, rng.uniform(0.4, 1.2))

    skin = np.clip(random_colour(rng, sat=(0.25, 0.55), val=(0.35, 0.95), hue=rng.uniform(0.02, 0.09)), 0, 1)
    clothes = texture(rng, h, w)
    if rng.random() < 0.3:
        photo = _photo_texture(rng, h, w)
        clothes = clothes if photo is None else _lerp(clothes, photo, np.full((h, w), 0.7, np.float32))
    fg = clothes.copy()
    head_mask = np.zeros((h, w), np.float32)
    cv2.ellipse(head_mask, (int(cx), int(hy)), head_ax, tilt, 0, 360, 1.0, -1, cv2.LINE_AA)
    cv2.rectangle(head_mask, (int(cx - neck_w), int(hy)), (int(cx + neck_w), int(sh_y)), 1.0, -1)
    head_mask = _blur(head_mask, 2.0)
    skin_tex = texture(rng, h, w, skin, np.clip(skin * 0.8, 0, 1), "noise")
    fg = _lerp(fg, skin_tex, head_mask)

    # hair: a cap over the head (long hair falls to the shoulders) plus strands from its outline
    hair = np.zeros((h, w), np.float32)
    long_hair = rng.random() < 0.5
    cv2.ellipse(hair, (int(cx), int(hy - r * 0.12)), (int(head_ax[0] * 1.12), int(r * 1.08)), tilt, 180, 360, 1.0,
                -1, cv2.LINE_AA)
    if long_hair:
        drop = r * rng.uniform(1.4, 2.6)
        for side in (-1, 1):  # a lock of hair on each side of the face, wider and rounded at the bottom
            x0 = cx + side * head_ax[0] * 0.85
            outer = _bezier((x0, hy - r * 0.6), (x0 + side * r * 0.7, hy + drop * 0.3), (x0 + side * r * 0.5, hy + drop))
            inner = _bezier((x0 - side * r * 0.05, hy + drop * 0.92), (x0 - side * r * 0.2, hy + drop * 0.4),
                            (x0 - side * r * 0.1, hy - r * 0.2))
            pts = np.concatenate([outer, inner]).astype(np.float32)
            cv2.fillPoly(hair, [np.round(pts * 16).astype(np.int32)], 1.0, cv2.LINE_AA, shift=4)
    hair = _blur(hair, 1.0)
    hair_c = random_colour(rng, sat=(0.2, 0.7), val=(0.08, 0.75), hue=rng.uniform(0.0, 0.12))
    hair_tex = texture(rng, h, w, hair_c, np.clip(hair_c * 1.4 + 0.05, 0, 1), "fine")
    n = int(rng.integers(250, 600) * (s / 640) ** 0.5 + 80)
    starts, normals = _outline_points(hair, rng, n, keep=lambda c: c[:, 1] < hy + (r * 2.5 if long_hair else r * 0.3))
    strands = _strands(rng, h, w, starts, normals, (0.1 * r, 0.7 * r), curl=0.08,
                       gravity=1.2 if long_hair else 0.3, width=1)
    fuzz = _blur(hair, rng.uniform(2.0, 5.0)) * rng.uniform(0.2, 0.5)  # flyaway haze around the hair
    hair_alpha = np.maximum(np.maximum(hair, strands), fuzz)
    fg = _lerp(fg, hair_tex, np.clip(hair_alpha * 1.5, 0, 1))
    alpha = np.maximum(body, hair_alpha)
    if rng.random() < 0.3:  # a translucent veil / scarf over a shoulder
        veil = np.zeros((h, w), np.float32)
        side = rng.choice([-1, 1])
        pts = np.array([[cx, sh_y - r * 0.3], [cx + side * sh_w * 1.5, sh_y + r * 0.2],
                        [cx + side * sh_w * 1.4, h], [cx + side * r * 0.3, h]], np.float32)
        cv2.fillPoly(veil, [np.round(pts * 16).astype(np.int32)], 1.0, cv2.LINE_AA, shift=4)
        veil = _blur(veil, 3.0) * (0.25 + 0.4 * fractal_noise(rng, h, w, base=6))
        fg = _lerp(fg, texture(rng, h, w, pattern="noise"), np.clip(veil * 2, 0, 1))
        alpha = np.maximum(alpha, veil)
    return fg, alpha


def _fur(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """An animal-like furry body (one or two overlapping ellipses) with dense fur strands along its outline."""
    s = min(h, w)
    body = np.zeros((h, w), np.float32)
    cx, cy = w * rng.uniform(0.4, 0.6), h * rng.uniform(0.45, 0.6)
    a, b = s * rng.uniform(0.2, 0.33), s * rng.uniform(0.16, 0.28)
    cv2.ellipse(body, (int(cx), int(cy)), (int(a), int(b)), rng.uniform(-30, 30), 0, 360, 1.0, -1, cv2.LINE_AA)
    if rng.random() < 0.7:  # a head
        hx, hy = cx + rng.choice([-1, 1]) * a * rng.uniform(0.7, 1.0), cy - b * rng.uniform(0.5, 0.9)
        cv2.circle(body, (int(hx), int(hy)), int(b * rng.uniform(0.5, 0.7)), 1.0, -1, cv2.LINE_AA)
        for side in (-1, 1):  # ears
            ex = hx + side * b * 0.35
            tri = np.array([[ex - b * 0.15, hy - b * 0.3], [ex + b * 0.15, hy - b * 0.3],
                            [ex + side * b * 0.1, hy - b * 0.85]], np.float32)
            cv2.fillPoly(body, [np.round(tri * 16).astype(np.int32)], 1.0, cv2.LINE_AA, shift=4)
    body = _blur(body, 1.0)
    c1 = random_colour(rng, sat=(0.1, 0.7), val=(0.15, 0.95), hue=rng.uniform(0.0, 0.15))
    fur_tex = texture(rng, h, w, c1, None, "fine")
    n = int(rng.integers(700, 1400) * (s / 640))
    starts, normals = _outline_points(body, rng, n)
    strands = _strands(rng, h, w, starts, normals, (0.02 * s, 0.09 * s), curl=0.12, gravity=0.15, width=1)
    inner = _strands(rng, h, w, starts - normals * rng.uniform(2, 10, (n, 1)), normals, (0.01 * s, 0.05 * s),
                     curl=0.1, gravity=0.1, width=1)  # strands over the body texture for visible fur
    fg = _lerp(fur_tex, np.clip(fur_tex * 1.3 + 0.05, 0, 1), inner * body)
    return fg, np.maximum(body, strands)


def _plant(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Stems with hard-edged leaves and thin grass blades growing from the bottom edge."""
    s = min(h, w)
    alpha = np.zeros((h, w), np.float32)
    green = random_colour(rng, sat=(0.35, 0.85), val=(0.25, 0.8), hue=rng.uniform(0.2, 0.42))
    if rng.random() < 0.25:  # autumn / flowers
        green = random_colour(rng, sat=(0.5, 0.9), val=(0.4, 0.9))
    tex = texture(rng, h, w, green, np.clip(green * 0.6, 0, 1), "noise")
    leaf_tex = texture(rng, h, w, np.clip(green * 1.2 + 0.05, 0, 1), np.clip(green * 0.7, 0, 1), "noise")
    fg = tex.copy()
    for _ in range(int(rng.integers(2, 6))):
        x0 = w * rng.uniform(0.25, 0.75)
        top = h * rng.uniform(0.1, 0.5)
        xs = x0 + np.cumsum(rng.normal(0, s * 0.01, 20))
        ys = np.linspace(h + 2, top, 20)
        stem = np.stack([xs, ys], 1).astype(np.float32)
        cv2.polylines(alpha, [np.round(stem * 16).astype(np.int32)], False, 1.0,
                      max(1, int(s * rng.uniform(0.006, 0.015))), cv2.LINE_AA, shift=4)
        leaves = np.zeros((h, w), np.float32)
        for k in range(int(rng.integers(3, 9))):
            p = stem[int(rng.integers(3, 20))]
            ang = rng.uniform(-160, -20)
            L, W = s * rng.uniform(0.05, 0.13), s * rng.uniform(0.015, 0.045)
            c = (p[0] + np.cos(np.radians(ang)) * L, p[1] + np.sin(np.radians(ang)) * L)
            cv2.ellipse(leaves, (int(c[0]), int(c[1])), (int(L), int(W)), ang, 0, 360, 1.0, -1, cv2.LINE_AA)
        fg = _lerp(fg, leaf_tex, leaves)
        alpha = np.maximum(alpha, leaves)
    n = int(rng.integers(60, 200) * (s / 640) + 20)
    starts = np.stack([rng.uniform(0.1, 0.9, n) * w, np.full(n, h + 2.0)], 1).astype(np.float32)
    dirs = np.stack([rng.normal(0, 0.3, n), -np.ones(n)], 1).astype(np.float32)
    blades = _strands(rng, h, w, starts, dirs, (0.2 * h, 0.6 * h), curl=0.03, gravity=0.05, width=2,
                      intensity=(0.7, 1.0))
    fg = _lerp(fg, np.clip(tex * 1.15, 0, 1), blades)
    alpha = np.maximum(_blur(alpha, 0.5), blades)
    return fg, alpha


def _glass(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """A lathe-shaped vessel (vase/bottle/glass): translucent body, opaque rims, white highlights."""
    cx = w * rng.uniform(0.42, 0.58)
    top, bot = h * rng.uniform(0.08, 0.25), h * rng.uniform(0.8, 0.95)
    t = np.linspace(0, 1, 40)
    kind = rng.integers(0, 3)
    base_r = min(h, w) * rng.uniform(0.15, 0.28)
    if kind == 0:   # bottle: narrow neck
        prof = np.where(t < 0.3, 0.3, 0.3 + 0.7 * np.clip((t - 0.3) / 0.15, 0, 1))
    elif kind == 1:  # vase: bulb
        prof = 0.55 + 0.45 * np.sin(np.pi * (0.2 + 0.8 * t)) ** 2
    else:           # tumbler
        prof = 0.8 + 0.2 * t
    rad = base_r * prof
    ys = top + (bot - top) * t
    poly = np.concatenate([np.stack([cx - rad, ys], 1), np.stack([cx + rad, ys], 1)[::-1]]).astype(np.float32)
    mask = np.zeros((h, w), np.float32)
    cv2.fillPoly(mask, [np.round(poly * 16).astype(np.int32)], 1.0, cv2.LINE_AA, shift=4)
    dist = cv2.distanceTransform((mask > 0.5).astype(np.uint8), cv2.DIST_L2, 5)
    rim_w = min(h, w) * rng.uniform(0.008, 0.02)
    base_a = rng.uniform(0.12, 0.45)
    alpha = mask * (base_a + (1 - base_a) * np.exp(-dist / rim_w))
    tint = random_colour(rng, sat=(0.05, 0.6), val=(0.5, 1.0))
    fg = texture(rng, h, w, tint, np.clip(tint * 0.8, 0, 1), "noise")
    hl = np.zeros((h, w), np.float32)
    for off in rng.uniform(-0.6, 0.6, int(rng.integers(1, 3))):
        xs = cx + off * base_r * prof
        pts = np.stack([xs, ys], 1)[5:-5].astype(np.float32)
        cv2.polylines(hl, [np.round(pts * 16).astype(np.int32)], False, 1.0, max(2, int(rim_w * 1.5)),
                      cv2.LINE_AA, shift=4)
    hl = _blur(hl, rim_w) * mask
    hl = np.clip(hl / max(hl.max(), 1e-6), 0, 1) * rng.uniform(0.6, 0.95)
    fg = _lerp(fg, np.ones_like(fg), hl)
    alpha = np.maximum(alpha, hl)
    return fg, alpha


def _object(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Hard-edged objects (star, polygon, rounded box, ring) with texture; sometimes motion or defocus blur."""
    s = min(h, w)
    alpha = np.zeros((h, w), np.float32)
    for _ in range(int(rng.integers(1, 4))):
        cx, cy = w * rng.uniform(0.3, 0.7), h * rng.uniform(0.3, 0.7)
        R = s * rng.uniform(0.12, 0.3)
        k = int(rng.integers(3, 9))
        ang = np.sort(rng.uniform(0, 2 * np.pi, k)) if rng.random() < 0.5 else np.linspace(0, 2 * np.pi, k * 2,
                                                                                           endpoint=False)
        rr = R * (rng.uniform(0.6, 1.0, len(ang)) if len(ang) == k else np.tile([1.0, rng.uniform(0.4, 0.7)], k))
        poly = np.stack([cx + rr * np.cos(ang), cy + rr * np.sin(ang)], 1).astype(np.float32)
        cv2.fillPoly(alpha, [np.round(poly * 16).astype(np.int32)], 1.0, cv2.LINE_AA, shift=4)
    if rng.random() < 0.5:  # a hole through the object
        cv2.circle(alpha, (int(w * rng.uniform(0.4, 0.6)), int(h * rng.uniform(0.4, 0.6))),
                   int(s * rng.uniform(0.03, 0.08)), 0.0, -1, cv2.LINE_AA)
    fg = texture(rng, h, w)
    if rng.random() < 0.35:
        photo = _photo_texture(rng, h, w)
        fg = fg if photo is None else _lerp(fg, photo, np.full((h, w), 0.8, np.float32))
    mode = rng.choice(["hard", "hard", "motion", "defocus"])
    if mode == "motion":
        L = int(s * rng.uniform(0.02, 0.06)) | 1
        k = np.zeros((L, L), np.float32)
        k[L // 2] = 1.0 / L
        rot = cv2.getRotationMatrix2D((L / 2 - 0.5, L / 2 - 0.5), rng.uniform(0, 180), 1.0)
        k = cv2.warpAffine(k, rot, (L, L))
        k /= k.sum()
        premult = cv2.filter2D(fg * alpha[..., None], -1, k)
        alpha = cv2.filter2D(alpha, -1, k)
        fg = np.where(alpha[..., None] > 1e-3, premult / np.maximum(alpha[..., None], 1e-3), fg)
    elif mode == "defocus":
        sig = s * rng.uniform(0.005, 0.015)
        premult = _blur(fg * alpha[..., None], sig)
        alpha = _blur(alpha, sig)
        fg = np.where(alpha[..., None] > 1e-3, premult / np.maximum(alpha[..., None], 1e-3), fg)
    else:
        alpha = _blur(alpha, 0.5)
    return np.clip(fg, 0, 1), alpha


def _limb(mask: np.ndarray, pts: np.ndarray, w0: float, w1: float, segments: int = 8) -> None:
    """Draw a tapering stroke along the polyline `pts` (width w0 at the start, w1 at the end) into `mask`."""
    t = np.linspace(0, 1, segments + 1)
    seg = np.linspace(0, len(pts) - 1, segments + 1)
    i0 = np.minimum(seg.astype(int), len(pts) - 2)
    p = pts[i0] + (seg - i0)[:, None] * (pts[i0 + 1] - pts[i0])
    for k in range(segments):
        width = max(1, int(round(w0 + (w1 - w0) * t[k])))
        a = np.round(p[k] * 16).astype(int)
        b = np.round(p[k + 1] * 16).astype(int)
        cv2.line(mask, (int(a[0]), int(a[1])), (int(b[0]), int(b[1])), 1.0, width, cv2.LINE_AA, shift=4)


def _creature(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """A photographed animal cut out by hand: a hard silhouette (body, neck, head, thin legs, horns or ears, tail)
    with a one-pixel anti-aliased rim, filled with fine fur-like, spotted, striped or photo texture.

    The other families tie fine texture to soft alpha (hair, fur strands); here texture and edge disagree, and the
    thin limbs lie wholly inside a realistic unknown band, as in cut-outs of real animals and birds."""
    s = min(h, w)
    alpha = np.zeros((h, w), np.float32)
    cx, cy = w * rng.uniform(0.38, 0.62), h * rng.uniform(0.35, 0.55)
    a = s * rng.uniform(0.2, 0.34)          # half body length
    b = a * rng.uniform(0.3, 0.6)           # half body height
    tilt = rng.uniform(-15, 15)
    cv2.ellipse(alpha, (int(cx), int(cy)), (int(a), int(b)), tilt, 0, 360, 1.0, -1, cv2.LINE_AA)
    facing = rng.choice([-1.0, 1.0])
    for end in (-1, 1):  # chest and hindquarters: a less regular outline than one ellipse
        cv2.ellipse(alpha, (int(cx + end * a * rng.uniform(0.4, 0.6)), int(cy + b * rng.uniform(-0.2, 0.2))),
                    (int(a * rng.uniform(0.35, 0.55)), int(b * rng.uniform(0.9, 1.25))), rng.uniform(-20, 20),
                    0, 360, 1.0, -1, cv2.LINE_AA)
    # legs: from the underside down towards the ground line, hip-knee-foot, tapering to a few pixels
    ground = min(h * 0.97, cy + b * 0.6 + a * rng.uniform(0.4, 1.2))
    n_legs = int(rng.choice([2, 2, 3, 4, 4]))
    leg_w = b * rng.uniform(0.2, 0.45)
    foot_w = max(2.0, s * rng.uniform(0.006, 0.02))
    for x in np.sort(rng.uniform(-0.75, 0.75, n_legs)):
        hip = np.array([cx + x * a, cy + b * 0.6])
        foot = np.array([hip[0] + rng.normal(0, 0.15) * a, ground - rng.uniform(0, 0.05) * h])
        knee = (hip + foot) / 2 + np.array([rng.normal(0, 0.08) * a, 0])
        _limb(alpha, np.stack([hip, knee, foot]).astype(np.float32), leg_w, foot_w)
        if rng.random() < 0.5:  # a hoof / claw
            cv2.ellipse(alpha, (int(foot[0] + facing * foot_w), int(foot[1])), (int(foot_w * 1.6), int(foot_w)),
                        0, 0, 360, 1.0, -1, cv2.LINE_AA)
    # neck and head
    neck_len = a * rng.uniform(0.3, 1.3)
    root = np.array([cx + facing * a * 0.75, cy - b * 0.2])
    ang = np.radians(rng.uniform(-80, -20))
    head = root + neck_len * np.array([facing * np.cos(ang), np.sin(ang)])
    mid = (root + head) / 2 + rng.normal(0, 0.1, 2) * a
    hr = b * rng.uniform(0.35, 0.65)
    _limb(alpha, np.stack([root, mid, head]).astype(np.float32), b * rng.uniform(0.5, 0.9), hr * 1.2)
    cv2.ellipse(alpha, (int(head[0] + facing * hr * 0.4), int(head[1])), (int(hr * rng.uniform(1.0, 1.6)), int(hr)),
                float(facing * rng.uniform(0, 30)), 0, 360, 1.0, -1, cv2.LINE_AA)
    kind = rng.choice(["horns", "ears", "beak", "none"])
    if kind in ("horns", "ears"):
        for side in (-0.4, 0.3):
            base = head + np.array([side * hr, -hr * 0.8])
            tip = base + np.array([rng.normal(-0.2, 0.3) * hr * facing, -hr * rng.uniform(0.8, 2.2)])
            bend = (base + tip) / 2 + np.array([-facing * hr * rng.uniform(0, 0.4), 0])
            _limb(alpha, np.stack([base, bend, tip]).astype(np.float32),
                  hr * (0.5 if kind == "ears" else 0.3), 1.0 if kind == "horns" else hr * 0.15)
    elif kind == "beak":
        tip = head + np.array([facing * hr * rng.uniform(1.8, 2.8), hr * rng.uniform(-0.2, 0.5)])
        tri = np.array([head + [0, -hr * 0.4], tip, head + [0, hr * 0.4]], np.float32)
        cv2.fillPoly(alpha, [np.round(tri * 16).astype(np.int32)], 1.0, cv2.LINE_AA, shift=4)
    # tail: a thin stroke from the rump, sometimes ending in a tuft of strands
    rump = np.array([cx - facing * a * 0.9, cy - b * 0.1])
    tail_end = rump + np.array([-facing * a * rng.uniform(0.2, 0.7), b * rng.uniform(-0.5, 1.8)])
    _limb(alpha, np.stack([rump, (rump + tail_end) / 2 + rng.normal(0, 0.1, 2) * a, tail_end]).astype(np.float32),
          b * rng.uniform(0.1, 0.3), max(2.0, foot_w * 0.6))
    alpha = _blur(alpha, rng.uniform(0.4, 0.9))
    if rng.random() < 0.3:  # a short mane or tuft: a little genuine soft edge on a hard cut-out
        keep = lambda c: c[:, 1] < cy - b * 0.3  # noqa: E731 - along the back and the neck
        n = int(rng.integers(40, 160) * (s / 640) + 10)
        starts, normals = _outline_points(alpha, rng, n, keep=keep)
        alpha = np.maximum(alpha, _strands(rng, h, w, starts, normals, (0.01 * s, 0.04 * s), curl=0.1,
                                           gravity=0.4, width=1, intensity=(0.5, 1.0)))
    # fill: animal colours, fine fur texture, spots or stripes, or a real photograph's texture; legs sometimes darker
    c1 = random_colour(rng, sat=(0.05, 0.7), val=(0.1, 0.9), hue=rng.uniform(0.0, 0.14))
    pattern = rng.choice(["fine", "fine", "noise", "stripes", "checks"])
    fg = texture(rng, h, w, c1, None, pattern)
    if rng.random() < 0.4:
        photo = _photo_texture(rng, h, w)
        fg = fg if photo is None else _lerp(fg, photo, np.full((h, w), rng.uniform(0.5, 0.9), np.float32))
    if rng.random() < 0.4:
        below = np.clip((np.arange(h, dtype=np.float32)[:, None] - (cy + b * 0.5)) / max(b, 1.0), 0, 1)
        fg = _lerp(fg, np.clip(fg * rng.uniform(0.3, 0.7), 0, 1), np.broadcast_to(below, (h, w)))
    return np.clip(fg, 0, 1), alpha


FAMILIES: tuple[tuple[str, Callable, float], ...] = (
    ("person", _person, 0.35), ("fur", _fur, 0.2), ("plant", _plant, 0.15), ("glass", _glass, 0.12),
    ("object", _object, 0.18), ("creature", _creature, 0.0),
)


def _camera(rng: np.random.Generator, fg: np.ndarray, alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Make a drawn foreground look photographed: volume shading (darker towards the silhouette, as on rounded
    objects), a directional light, sometimes a slight defocus of the whole object (fg and alpha together, done on
    premultiplied colour), and sensor noise."""
    h, w = alpha.shape
    solid = (alpha > 0.5).astype(np.uint8)
    dist = cv2.distanceTransform(solid, cv2.DIST_L2, 3)
    depth = 1.0 - np.exp(-dist / (0.04 * max(h, w)))
    ang = rng.uniform(0, 2 * np.pi)
    yy = np.linspace(-0.5, 0.5, h, dtype=np.float32)[:, None]
    xx = np.linspace(-0.5, 0.5, w, dtype=np.float32)[None, :]
    light = 1.0 + rng.uniform(0.1, 0.35) * (xx * np.cos(ang) + yy * np.sin(ang))
    shade = (1.0 - rng.uniform(0.1, 0.3) * (1.0 - depth)) * light
    fg = fg * shade[..., None]
    if rng.random() < 0.2:
        sig = rng.uniform(0.5, 1.2)
        premult = _blur(np.ascontiguousarray(fg * alpha[..., None]), sig)
        alpha = _blur(alpha, sig)
        fg = np.where(alpha[..., None] > 1e-3, premult / np.maximum(alpha[..., None], 1e-3), fg)
    fg = fg + rng.standard_normal(fg.shape, dtype=np.float32) * rng.uniform(0.002, 0.012)
    return np.clip(fg, 0, 1), alpha


def _photo_texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray | None:
    """A colour-jittered crop of a bundled colour photograph (real image statistics for clothes and objects)."""
    name = _COLOUR_PHOTOS[int(rng.integers(len(_COLOUR_PHOTOS)))]
    try:
        img = _photo(name).astype(np.float32) / 255.0
    except Exception:  # noqa: BLE001 - not bundled in this install: the caller keeps its procedural texture
        return None
    ph, pw = img.shape[:2]
    ch, cw = int(ph * rng.uniform(0.2, 0.5)), int(pw * rng.uniform(0.2, 0.5))
    y0, x0 = int(rng.integers(0, ph - ch + 1)), int(rng.integers(0, pw - cw + 1))
    tex = cv2.resize(np.ascontiguousarray(img[y0:y0 + ch, x0:x0 + cw]), (w, h), interpolation=cv2.INTER_LINEAR)
    hue_mix = random_colour(rng)
    return np.clip(0.6 * tex + 0.4 * tex.mean(axis=2, keepdims=True) * hue_mix * 1.6, 0, 1)


def _aspect_size(rng: np.random.Generator, size: int) -> tuple[int, int]:
    """(h, w) with long side `size` and a common photo aspect ratio."""
    ratio = float(rng.choice([1.0, 4 / 3, 3 / 2, 5 / 4]))
    short = int(round(size / ratio))
    return (size, short) if rng.random() < 0.6 else (short, size)


def family_weights(spec: str) -> tuple[float, ...]:
    """`name=weight,...` (e.g. `object=3,person=1`) as weights in FAMILIES order; families left out get weight 0.
    Raises ValueError naming what is wrong."""
    names = [f[0] for f in FAMILIES]
    weights = dict.fromkeys(names, 0.0)
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, sep, value = (part.strip() for part in item.partition("="))
        if not sep or name not in weights:
            raise ValueError(f"family weight {item!r}: expected NAME=WEIGHT with NAME one of {', '.join(names)}")
        try:
            weight = float(value)
        except ValueError:
            raise ValueError(f"family weight {item!r}: {value!r} is not a number") from None
        if not np.isfinite(weight) or weight < 0:
            raise ValueError(f"family weight {item!r}: weights must be finite and >= 0")
        weights[name] = weight
    if sum(weights.values()) <= 0:
        raise ValueError(f"family weights {spec!r}: at least one family needs a weight > 0")
    return tuple(weights[n] for n in names)


def make_foreground(seed: int, index: int, size: int,
                    families: tuple[float, ...] | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """Foreground `index` for `seed`: (RGB uint8 H x W x 3, alpha uint8 H x W, family name). Deterministic.
    `families`: weights in FAMILIES order (`family_weights`), default the built-in mix."""
    rng = np.random.default_rng([seed, FG_STREAM, index])
    h, w = _aspect_size(rng, size)
    probs = np.array(families if families is not None else [f[2] for f in FAMILIES], dtype=np.float64)
    name, fn, _ = FAMILIES[int(rng.choice(len(FAMILIES), p=probs / probs.sum()))]
    fg, alpha = fn(rng, h * SS, w * SS)
    if name == "person" and rng.random() < 0.5:  # mirror half the portraits
        fg, alpha = fg[:, ::-1], alpha[:, ::-1]
    fg = cv2.resize(np.ascontiguousarray(fg), (w, h), interpolation=cv2.INTER_AREA)
    alpha = cv2.resize(np.ascontiguousarray(alpha), (w, h), interpolation=cv2.INTER_AREA)
    fg, alpha = _camera(rng, fg, alpha)
    a8 = np.clip(np.rint(alpha * 255), 0, 255).astype(np.uint8)
    return np.clip(np.rint(fg * 255), 0, 255).astype(np.uint8), a8, name


# ----------------------------------------------------------------------------- backgrounds
@functools.lru_cache(maxsize=None)
def _photo(name: str) -> np.ndarray:
    import skimage.data  # local import: only the synthetic generator needs scikit-image

    return np.ascontiguousarray(getattr(skimage.data, name)())


def preload_photos() -> None:
    """Load the bundled photographs once in the parent process, so forked workers share them (copy-on-write)
    instead of each paying the scikit-image import and decode."""
    for name in _COLOUR_PHOTOS + _GREY_PHOTOS:
        try:
            _photo(name)
        except Exception as exc:  # noqa: BLE001 - a missing optional image just narrows the pool
            log.info("skimage.data.%s unavailable (%s)", name, exc)


def _photo_background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    names = _COLOUR_PHOTOS + _COLOUR_PHOTOS + _GREY_PHOTOS  # colour photographs twice as likely
    name = names[int(rng.integers(len(names)))]
    try:
        img = _photo(name)
    except Exception as exc:  # noqa: BLE001 - an image missing from this install: fall back, deterministically
        log.info("skimage.data.%s unavailable (%s); using a procedural background", name, exc)
        return _procedural_background(rng, h, w)
    if img.ndim == 2:  # grey texture photo: tint it with a random colour ramp
        g = img.astype(np.float32) / 255.0
        c1, c2 = random_colour(rng, val=(0.05, 0.4)), random_colour(rng, val=(0.6, 1.0))
        img = (_lerp(np.broadcast_to(c1, g.shape + (3,)), np.broadcast_to(c2, g.shape + (3,)), g) * 255)
    img = img.astype(np.float32) / 255.0 if img.dtype == np.uint8 else img / 255.0
    ph, pw = img.shape[:2]
    scale = rng.uniform(0.45, 1.0)
    ch, cw = int(ph * scale), int(pw * scale)
    tgt = h / w
    if ch / cw > tgt:
        ch = max(8, int(cw * tgt))
    else:
        cw = max(8, int(ch / tgt))
    y0, x0 = int(rng.integers(0, ph - ch + 1)), int(rng.integers(0, pw - cw + 1))
    crop = img[y0:y0 + ch, x0:x0 + cw]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    out = cv2.resize(np.ascontiguousarray(crop), (w, h), interpolation=cv2.INTER_CUBIC)
    gain = rng.uniform(0.75, 1.25, 3).astype(np.float32)
    return np.clip(out * gain + rng.uniform(-0.08, 0.08), 0, 1)


def _bokeh_background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    img = texture(rng, h, w, pattern="noise")
    for _ in range(int(rng.integers(15, 60))):
        c = random_colour(rng, val=(0.5, 1.0))
        r = int(min(h, w) * rng.uniform(0.02, 0.1))
        layer = np.zeros((h, w), np.float32)
        cv2.circle(layer, (int(rng.integers(0, w)), int(rng.integers(0, h))), r, 1.0, -1, cv2.LINE_AA)
        layer = _blur(layer, r * 0.15) * rng.uniform(0.3, 0.8)
        img = _lerp(img, np.broadcast_to(c, img.shape), layer)
    return img


def _procedural_background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    kind = rng.choice(["bokeh", "texture", "scene"])
    if kind == "bokeh":
        return _bokeh_background(rng, h, w)
    if kind == "texture":
        return texture(rng, h, w)
    # a crude scene: sky gradient over textured ground with a horizon and a few blocks (buildings/furniture)
    sky = _lerp(np.broadcast_to(random_colour(rng, val=(0.6, 1.0)), (h, w, 3)),
                np.broadcast_to(random_colour(rng, val=(0.3, 0.8)), (h, w, 3)),
                np.broadcast_to(np.linspace(0, 1, h, dtype=np.float32)[:, None], (h, w)))
    img = sky.copy()
    horizon = int(h * rng.uniform(0.4, 0.75))
    img[horizon:] = texture(rng, h - horizon, w)
    for _ in range(int(rng.integers(2, 8))):
        x0, bw = int(rng.integers(0, w)), int(w * rng.uniform(0.05, 0.25))
        top = int(horizon - h * rng.uniform(0.05, 0.4))
        img[max(0, top):horizon, x0:x0 + bw] = texture(rng, horizon - max(0, top), min(bw, w - x0))
    return img


def make_background(seed: int, index: int, size: int) -> np.ndarray:
    """Background `index` for `seed`: RGB uint8, long side `size`; ~60 % photographs, the rest procedural."""
    rng = np.random.default_rng([seed, BG_STREAM, index])
    h, w = _aspect_size(rng, size)
    img = _photo_background(rng, h, w) if rng.random() < 0.6 else _procedural_background(rng, h, w)
    if rng.random() < 0.35:  # defocused, like a portrait background
        img = _blur(np.ascontiguousarray(img), min(h, w) * rng.uniform(0.004, 0.015))
    return np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)
