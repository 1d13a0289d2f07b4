"""Every public dataset layout on a tiny tree built here: prepare, verify, expected shard counts, released
trimaps kept in test shards, estimated foregrounds recorded, and one layout per family through the train loader."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_prep.cli import main
from data_prep.compositing import composite, fit_background
from data_prep.foreground import METHOD
from data_prep.reader import iter_samples
from data_prep.synthetic import make_background, make_foreground
from data_prep.verify import verify_dataset

from .conftest import counts, manifest, run_cli

SIZE = 48


def _write_pairs(img_dir: Path, alpha_dir: Path, names: list[str], *, photo: bool, seed: int,
                 img_ext: str = "png", alpha_ext: str = "png", trimap_dir: Path | None = None) -> None:
    """Synthetic foreground (or, with photo, that foreground composited on a background) + alpha per name; a
    trimap (all 128, unlike any trimap made from an alpha) per name when trimap_dir is given."""
    for d in (img_dir, alpha_dir, trimap_dir):
        if d is not None:
            d.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        fg, alpha, _ = make_foreground(seed, i, SIZE)
        img = composite(fg, alpha, fit_background(make_background(seed, 100 + i, SIZE), *alpha.shape)) if photo else fg
        Image.fromarray(img).save(img_dir / f"{name}.{img_ext}")
        Image.fromarray(alpha).save(alpha_dir / f"{name}.{alpha_ext}")
        if trimap_dir is not None:
            Image.fromarray(np.full(alpha.shape, 128, np.uint8)).save(trimap_dir / f"{name}.png")


def _bgs(d: Path, n: int = 3) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(make_background(5, i, SIZE + 16)).save(d / f"bg{i}.jpg")
    return d


TRAIN = ["a1", "b 2", "c.3", "d4"]
TEST = ["t1", "t2"]


def _tree(layout: str, root: Path) -> None:
    w = _write_pairs
    if layout == "distinctions646":
        w(root / "Train/FG", root / "Train/GT", TRAIN, photo=False, seed=1)
        w(root / "Test/FG", root / "Test/GT", TEST, photo=False, seed=2)
    elif layout == "transparent460":
        w(root / "Train/fg", root / "Train/alpha", TRAIN, photo=False, seed=1)
        w(root / "Test/fg", root / "Test/alpha", TEST, photo=False, seed=2, trimap_dir=root / "Test/trimap")
    elif layout == "hhm50k":
        w(root / "foregrounds", root / "alphas", TRAIN, photo=False, seed=1)
        w(root / "images", root / "alphas", TRAIN, photo=True, seed=1)
        _bgs(root / "backgrounds")
    elif layout == "simd":
        w(root / "glass/fg", root / "glass/alpha", TRAIN[:2], photo=False, seed=1)
        w(root / "fur/fg", root / "fur/alpha", TRAIN[:2], photo=False, seed=2)  # same stems in another class
    elif layout == "am2k":
        w(root / "train/original", root / "train/mask", TRAIN, photo=True, seed=1, img_ext="jpg")
        w(root / "validation/original", root / "validation/mask", TEST, photo=True, seed=2, img_ext="jpg",
          trimap_dir=root / "validation/trimap")
    elif layout == "p3m10k":
        w(root / "train/blurred_image", root / "train/mask", TRAIN, photo=True, seed=1, img_ext="jpg")
        v = root / "validation"
        w(v / "P3M-500-P/blurred_image", v / "P3M-500-P/mask", TEST, photo=True, seed=2, img_ext="jpg",
          trimap_dir=v / "P3M-500-P/trimap")
        w(v / "P3M-500-NP/original_image", v / "P3M-500-NP/mask", TEST[:1], photo=True, seed=3, img_ext="jpg",
          trimap_dir=v / "P3M-500-NP/trimap")
    elif layout == "ppm100":
        w(root / "image", root / "matte", TRAIN, photo=True, seed=1, img_ext="jpg", alpha_ext="jpg")
    elif layout == "aim500":
        w(root / "original", root / "mask", TRAIN, photo=True, seed=1, img_ext="jpg", trimap_dir=root / "trimap")
    elif layout == "rwp636":
        w(root / "image", root / "alpha", TRAIN, photo=True, seed=1)
    else:
        raise AssertionError(layout)


# layout -> (extra CLI args, expected samples per kind, expected test keys)
CASES = {
    "distinctions646": ([], {"fg": 3, "bg": 3, "val": 2, "test": 4}, ["t1_0", "t1_1", "t2_0", "t2_1"]),
    "transparent460": ([], {"fg": 3, "bg": 3, "val": 2, "test": 4}, ["t1_0", "t1_1", "t2_0", "t2_1"]),
    "hhm50k": ([], {"fg": 3, "bg": 3, "val": 2}, []),
    "simd": ([], {"fg": 3, "bg": 3, "val": 2}, []),
    "am2k": ([], {"fg": 3, "bg": 3, "val": 2, "test": 2}, ["t1", "t2"]),
    "p3m10k": ([], {"fg": 3, "bg": 3, "val": 2, "test": 3},
               ["P3M-500-NP__t1", "P3M-500-P__t1", "P3M-500-P__t2"]),
    "ppm100": (["--test-count", "1"], {"fg": 2, "bg": 3, "val": 2, "test": 1}, None),
    "aim500": (["--test-count", "1"], {"fg": 2, "bg": 3, "val": 2, "test": 1}, None),
    "rwp636": (["--test-count", "1"], {"fg": 2, "bg": 3, "val": 2, "test": 1}, None),
}
IMAGE_LAYOUTS = {"am2k", "p3m10k", "ppm100", "aim500", "rwp636"}
RELEASED_TRIMAPS = {"transparent460", "am2k", "p3m10k", "aim500"}


def _samples(out: Path, kind: str) -> dict[str, dict]:
    return {k: m for s in manifest(out)["shards"] if s["kind"] == kind for k, m in iter_samples(out / s["name"])}


def _prepare(layout: str, tmp: Path) -> Path:
    root, out = tmp / layout, tmp / "out"
    _tree(layout, root)
    bg = [] if layout == "hhm50k" else ["--bg", str(_bgs(tmp / "bg"))]
    args, _, _ = CASES[layout]
    assert main([layout, "--root", str(root), *bg, "--out", str(out), "--workers", "1", "--val-count", "1",
                 *args]) == 0
    return out


@pytest.mark.parametrize("layout", sorted(CASES))
def test_layout_prepares_and_verifies(layout: str, tmp_path: Path) -> None:
    out = _prepare(layout, tmp_path)
    _, expected, test_keys = CASES[layout]
    assert counts(out) == expected
    assert verify_dataset(out) == []
    tests = _samples(out, "test")
    if test_keys is not None:
        assert sorted(tests) == test_keys
    for m in tests.values():
        tri = np.asarray(Image.open(io.BytesIO(m["trimap.png"])))
        assert (tri == 128).all() == (layout in RELEASED_TRIMAPS)  # the released (all-128) trimap, else a made one
    fg_metas = [json.loads(m["meta.json"]) for m in _samples(out, "fg").values()]
    estimated = {meta.get("fg_estimated") for meta in fg_metas}
    doc = manifest(out)
    if layout in IMAGE_LAYOUTS:
        assert estimated == {METHOD}
        assert doc["foreground_estimation"]["method"] == METHOD and doc["foreground_estimation"]["pymatting"]
        assert all(json.loads(m["meta.json"]).get("fg_estimated") == METHOD for m in _samples(out, "val").values())
    else:
        assert estimated == {None} and "foreground_estimation" not in doc
    if layout == "simd":
        assert {k.split("__")[0] for k in _samples(out, "fg")} <= {"glass", "fur"}


def test_estimated_foreground_differs_from_the_photo(tmp_path: Path) -> None:
    """The fg member is the estimate, not the photo copied: on soft pixels it is closer to the true foreground."""
    out = _prepare("rwp636", tmp_path)
    for key, m in _samples(out, "fg").items():
        i = TRAIN.index(next(n for n in TRAIN if key == n.replace(" ", "_").replace(".", "_")))
        true_fg, alpha, _ = make_foreground(1, i, SIZE)
        photo = np.asarray(Image.open(tmp_path / "rwp636/image" / f"{TRAIN[i]}.png")).astype(float)
        est = np.asarray(Image.open(io.BytesIO(m["fg.png"]))).astype(float)
        soft = (alpha > 0) & (alpha < 255)
        assert np.abs(est - true_fg)[soft].mean() < np.abs(photo - true_fg)[soft].mean()


@pytest.mark.parametrize("layout", ["transparent460", "am2k"])
def test_layout_loads_for_training(layout: str, tmp_path: Path) -> None:
    import pipeline

    out = _prepare(layout, tmp_path)
    batch = next(iter(pipeline.build_train_loader(out, 2, 32, num_threads=1)))
    assert batch["image"].shape == (2, 3, 32, 32)


def test_missing_layout_folder_is_named(tmp_path: Path, capsys) -> None:
    root = tmp_path / "am2k"
    _write_pairs(root / "train/original", root / "train/wrong", TRAIN, photo=True, seed=1)
    assert main(["am2k", "--root", str(root), "--bg", str(_bgs(tmp_path / "bg")), "--out", str(tmp_path / "o")]) == 2
    assert "train/mask/" in capsys.readouterr().err


def test_image_without_alpha_is_bad_input(tmp_path: Path, capsys) -> None:
    root = tmp_path / "ppm"
    _write_pairs(root / "image", root / "matte", TRAIN, photo=True, seed=1)
    (root / "matte" / "d4.png").unlink()
    assert main(["ppm100", "--root", str(root), "--bg", str(_bgs(tmp_path / "bg")), "--out", str(tmp_path / "o"),
                 "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert "d4.png" in err and "image has no alpha" in err


def test_help_shows_the_tree() -> None:
    proc = run_cli("p3m10k", "--help", check=True)
    assert "validation/P3M-500-NP/{original_image,mask,trimap}" in proc.stdout


def test_photos_written_as_they_are(tmp_path: Path) -> None:
    """--photos: one photo-* sample per training photo holding the photo itself, its alpha, a trimap from the alpha
    and estimated fg and bg that re-composite to the photo; recorded as never re-composited."""
    from data_prep.foreground import recomposite_error

    root, out = tmp_path / "rwp636", tmp_path / "out"
    _tree("rwp636", root)
    assert main(["rwp636", "--root", str(root), "--bg", str(_bgs(tmp_path / "bg")), "--out", str(out),
                 "--workers", "1", "--photos"]) == 0
    assert verify_dataset(out) == []
    photos = _samples(out, "photo")
    assert sorted(photos) == sorted(_samples(out, "fg")) and len(photos) == len(TRAIN)
    assert manifest(out)["options"]["photos"] is True
    for key, m in photos.items():
        name = next(n for n in TRAIN if key == n.replace(" ", "_").replace(".", "_"))
        photo = np.asarray(Image.open(root / "image" / f"{name}.png"))
        dec = {b: np.asarray(Image.open(io.BytesIO(m[f"{b}.{ext}"]))) for b, ext in
               (("image", "png"), ("alpha", "png"), ("trimap", "png"), ("fg", "png"), ("bg", "jpg"))}
        assert np.array_equal(dec["image"], photo)
        assert set(np.unique(dec["trimap"])) <= {0, 128, 255}
        meta = json.loads(m["meta.json"])
        assert meta["recomposite"] is False and meta["fg_estimated"] == METHOD == meta["bg_estimated"]
        assert recomposite_error(photo, dec["alpha"], dec["fg"], dec["bg"]) < 0.03


def test_photos_only_for_image_layouts(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit):
        main(["transparent460", "--root", str(tmp_path), "--bg", str(tmp_path), "--out", str(tmp_path / "o"),
              "--photos"])
    assert "--photos" in capsys.readouterr().err


def test_released_trimap_that_is_a_matte_is_bad_input(tmp_path: Path, capsys) -> None:
    """A released 'trimap' holding soft alpha values is refused by name (not thresholded into a wrong band); a
    label-coded 0/1/2 trimap is read as background/unknown/foreground."""
    root = tmp_path / "am2k"
    _tree("am2k", root)
    tri_dir = root / "validation/trimap"
    names = sorted(p.name for p in tri_dir.iterdir())
    h, w = np.asarray(Image.open(tri_dir / names[0])).shape
    Image.fromarray(np.tile(np.linspace(0, 255, w).astype(np.uint8), (h, 1))).save(tri_dir / names[0])
    h, w = np.asarray(Image.open(tri_dir / names[1])).shape
    labels = np.zeros((h, w), np.uint8)
    labels[:, w // 3:] = 1
    labels[:, 2 * w // 3:] = 2
    Image.fromarray(labels).save(tri_dir / names[1])
    args = ["am2k", "--root", str(root), "--bg", str(_bgs(tmp_path / "bg")), "--workers", "1", "--val-count", "1"]
    assert main([*args, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert names[0] in err and "not a trimap" in err
    assert main([*args, "--out", str(tmp_path / "o2"), "--skip-bad"]) == 0
    test = _samples(tmp_path / "o2", "test")
    assert len(test) == 1
    tri = np.asarray(Image.open(io.BytesIO(next(iter(test.values()))["trimap.png"])))
    assert set(np.unique(tri).tolist()) == {0, 128, 255}
