"""Dataset statistics and a contact sheet a person can look at (`python -m data_prep stats DIR --preview x.png`)."""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

from formats.encoding import member_name, member_names

from .compositing import composite, fit_background, trimap_from_alpha
from .images import decode
from .manifest import read_manifest
from .reader import iter_samples


def _checkerboard(h: int, w: int, cell: int = 12) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    board = (((yy // cell) + (xx // cell)) % 2).astype(np.uint8)
    return np.where(board[..., None] == 1, 200, 235).astype(np.uint8).repeat(3, axis=2)


def _tile(img: np.ndarray, size: int) -> np.ndarray:
    """Letterbox an RGB or grey image into a size x size RGB tile."""
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    h, w = img.shape[:2]
    s = size / max(h, w)
    nh, nw = max(1, round(h * s)), max(1, round(w * s))
    small = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA)
    tile = np.full((size, size, 3), 40, np.uint8)
    y0, x0 = (size - nh) // 2, (size - nw) // 2
    tile[y0:y0 + nh, x0:x0 + nw] = small
    return tile


def compute_stats(dataset_dir: Path) -> dict:
    """Samples per kind, image size ranges, unknown-region fractions (trimap 128; fg: trimap made from alpha)
    and the soft-alpha fraction (0 < alpha < 255)."""
    doc = read_manifest(dataset_dir)
    enc = doc.encoding
    firsts = (*member_names("fg", enc), member_name("image", enc), member_name("bg", enc))
    alpha_m, trimap_m = member_name("alpha", enc), member_name("trimap", enc)
    acc: dict[str, dict] = defaultdict(lambda: {"samples": 0, "shards": 0, "bytes": 0, "widths": [], "heights": [],
                                                "unknown": [], "soft": []})
    for shard in doc.shards:
        a = acc[shard["kind"]]
        a["shards"] += 1
        a["bytes"] += shard["bytes"]
        for _key, members in iter_samples(Path(dataset_dir) / shard["name"]):
            a["samples"] += 1
            first = next((e for e in firsts if e in members), None)
            if "meta.json" in members:
                meta = json.loads(members["meta.json"])
                w, h = meta["width"], meta["height"]
            elif first is not None:
                h, w = decode(members[first], first).shape[:2]
            else:
                continue
            a["widths"].append(w)
            a["heights"].append(h)
            if alpha_m in members:
                alpha = decode(members[alpha_m], alpha_m)
                a["soft"].append(float(((alpha > 0) & (alpha < 255)).mean()))
                tri = decode(members[trimap_m], trimap_m) if trimap_m in members else trimap_from_alpha(alpha)
                a["unknown"].append(float((tri == 128).mean()))
    out = {}
    for kind, a in acc.items():
        entry = {"samples": a["samples"], "shards": a["shards"], "bytes": a["bytes"]}
        if a["widths"]:
            entry["width"] = [int(min(a["widths"])), int(max(a["widths"]))]
            entry["height"] = [int(min(a["heights"])), int(max(a["heights"]))]
        if a["unknown"]:
            entry["unknown_fraction_mean"] = round(float(np.mean(a["unknown"])), 4)
            entry["soft_alpha_fraction_mean"] = round(float(np.mean(a["soft"])), 4)
        out[kind] = entry
    return {"dataset": str(dataset_dir), "encoding": enc, "kinds": out, "skipped": len(doc.skipped)}


def write_preview(dataset_dir: Path, png_path: Path, rows: int = 8, tile: int = 192) -> Path:
    """Contact sheet: per row a foreground over a checkerboard, its alpha, and the foreground composited on a
    background from the bg shards; then test/val rows: composite image, trimap, alpha."""
    doc = read_manifest(dataset_dir)
    by_kind = defaultdict(list)
    for s in doc.shards:
        by_kind[s["kind"]].append(Path(dataset_dir) / s["name"])

    def image(m: dict[str, bytes], base: str) -> np.ndarray:
        name = next(n for n in member_names(base, doc.encoding) if n in m)
        return decode(m[name], name)

    def take(kind: str, n: int) -> list[dict[str, bytes]]:
        got = []
        for p in by_kind.get(kind, []):
            for _k, m in iter_samples(p):
                got.append(m)
                if len(got) >= n:
                    return got
        return got

    bgs = [image(m, "bg") for m in take("bg", rows)]
    lines = []
    for i, m in enumerate(take("fg", rows)):
        fg = image(m, "fg")
        alpha = image(m, "alpha")
        h, w = alpha.shape
        over_checker = composite(fg, alpha, _checkerboard(h, w))
        comp = composite(fg, alpha, fit_background(bgs[i % len(bgs)], h, w)) if bgs else over_checker
        lines.append([_tile(over_checker, tile), _tile(alpha, tile), _tile(comp, tile)])
    for kind in ("test", "val"):
        for m in take(kind, max(1, rows // 4)):
            lines.append([_tile(image(m, "image"), tile), _tile(image(m, "trimap"), tile),
                          _tile(image(m, "alpha"), tile)])
    if not lines:
        raise ValueError(f"{dataset_dir}: no fg/test/val samples to preview")
    # two groups of columns side by side keep the sheet roughly square
    half = (len(lines) + 1) // 2
    left, right = lines[:half], lines[half:]
    blank = [np.full((tile, tile, 3), 40, np.uint8)] * 3
    rows_img = [np.concatenate(left[i] + [np.full((tile, 8, 3), 255, np.uint8)] + (right[i] if i < len(right)
                                                                                   else blank), axis=1)
                for i in range(half)]
    sheet = np.concatenate(rows_img, axis=0)
    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(png_path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    return png_path
