"""`composition1k` on a miniature copy of the Adobe layout (names with spaces and dots, both Training_set
variants, merged test composites <fg>_<i>.png mapped to their alphas)."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from data_prep.cli import main
from data_prep.reader import iter_samples
from data_prep.verify import verify_dataset

from .conftest import counts, make_raw, manifest


def _layout(tmp: Path) -> tuple[Path, Path]:
    raw = make_raw(tmp / "raw", n_fg=6, n_bg=3, size=64)
    root = tmp / "c1k"
    names = ["girl 1.2", "dandelion-1", "glass (3)", "dog.fur", "spider web", "woman"]
    srcs = sorted(raw["fg"].iterdir())
    for i, (name, src) in enumerate(zip(names, srcs)):
        group = root / "Training_set" / ("Adobe-licensed images" if i < 4 else "Other")
        (group / "fg").mkdir(parents=True, exist_ok=True)
        (group / "alpha").mkdir(parents=True, exist_ok=True)
        Image.open(src).convert("RGB").save(group / "fg" / f"{name}.jpg")
        Image.open(raw["alpha"] / f"{src.stem}.png").save(group / "alpha" / f"{name}.jpg")  # Adobe ships some jpg
    test = root / "Test_set"
    for d in ("merged", "Adobe-licensed images/alpha", "Adobe-licensed images/trimaps"):
        (test / d).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for t in ("cobweb", "pot.plant"):
        alpha = (rng.random((48, 64)) * 255).astype(np.uint8)
        Image.fromarray(alpha).save(test / "Adobe-licensed images/alpha" / f"{t}.png")
        for i in range(3):
            Image.fromarray((rng.random((48, 64, 3)) * 255).astype(np.uint8)).save(test / "merged" / f"{t}_{i}.png")
            tri = np.full((48, 64), 128, np.uint8)
            tri[:10], tri[-10:] = 0, 255
            tri[20, 20] = 130  # resampling noise in a released trimap is snapped to 128
            Image.fromarray(tri).save(test / "Adobe-licensed images/trimaps" / f"{t}_{i}.png")
    return root, raw["bg"]


def test_composition1k_layout(tmp_path):
    root, bg = _layout(tmp_path)
    out = tmp_path / "out"
    assert main(["composition1k", "--root", str(root), "--bg", str(bg), "--out", str(out), "--workers", "1",
                 "--val-count", "1", "--train-composites", "1"]) == 0
    assert counts(out) == {"fg": 5, "bg": 3, "val": 2, "test": 6, "train": 5}
    assert verify_dataset(out) == []
    tests = {k: m for s in manifest(out)["shards"] if s["kind"] == "test" for k, m in iter_samples(out / s["name"])}
    assert sorted(tests) == ["cobweb_0", "cobweb_1", "cobweb_2", "pot_plant_0", "pot_plant_1", "pot_plant_2"]
    m = tests["pot_plant_1"]
    meta = json.loads(m["meta.json"])
    assert meta["fg"] == "pot.plant.png" and meta["bg"] == "pot.plant_1.png"
    merged = root / "Test_set/merged/pot.plant_1.png"
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(m["image.png"]))), np.asarray(Image.open(merged)))
    tri = np.asarray(Image.open(io.BytesIO(m["trimap.png"])))
    assert set(np.unique(tri)) == {0, 128, 255} and tri[20, 20] == 128
    fg_keys = {k for s in manifest(out)["shards"] if s["kind"] == "fg" for k, _ in iter_samples(out / s["name"])}
    assert all("." not in k and " " not in k for k in fg_keys) and len(fg_keys) == 5


def test_composition1k_missing_training_set(tmp_path, capsys):
    (tmp_path / "empty_root").mkdir()
    raw = make_raw(tmp_path / "raw", n_fg=1, n_bg=1, size=64)
    assert main(["composition1k", "--root", str(tmp_path / "empty_root"), "--bg", str(raw["bg"]),
                 "--out", str(tmp_path / "o")]) == 2
    assert "no Training_set/fg" in capsys.readouterr().err


def test_composition1k_orphan_test_composite(tmp_path, capsys):
    root, bg = _layout(tmp_path)
    Image.new("RGB", (64, 48)).save(root / "Test_set/merged/unknown_0.png")
    out = tmp_path / "out"
    args = ["composition1k", "--root", str(root), "--bg", str(bg), "--out", str(out), "--workers", "1"]
    assert main(args) == 2
    assert "unknown_0.png" in capsys.readouterr().err
    assert main(args + ["--skip-bad"]) == 0
    assert [s["path"] for s in manifest(out)["skipped"]] == [str(root / "Test_set/merged/unknown_0.png")]
    assert counts(out)["test"] == 6


def test_composition1k_as_shipped_writes_training_shards_without_test_composites(tmp_path, caplog):
    # Adobe ships Test_set without merged/ (its composition script makes them from PASCAL VOC backgrounds)
    root, bg = _layout(tmp_path)
    test = root / "Test_set"
    (test / "merged").rename(tmp_path / "merged_elsewhere")
    (test / "Adobe-licensed images/fg").mkdir()
    (test / "test_fg_names.txt").write_text("cobweb.png\npot.plant.png\n")
    out = tmp_path / "out"
    assert main(["composition1k", "--root", str(root), "--bg", str(bg), "--out", str(out), "--workers", "1",
                 "--val-count", "1"]) == 0
    assert counts(out)["fg"] == 5 and counts(out).get("test", 0) == 0
    assert "no merged/ composites" in caplog.text and "no test shards are written" in caplog.text


def test_composition1k_test_composite_without_its_released_trimap(tmp_path, capsys):
    # a generated trimap would score the composite on another benchmark than Composition-1k's
    root, bg = _layout(tmp_path)
    missing = root / "Test_set/Adobe-licensed images/trimaps/cobweb_1.png"
    missing.unlink()
    out = tmp_path / "out"
    args = ["composition1k", "--root", str(root), "--bg", str(bg), "--out", str(out), "--workers", "1"]
    assert main(args) == 2
    assert "no trimap cobweb_1.*" in capsys.readouterr().err
    assert main(args + ["--skip-bad"]) == 0
    assert counts(out)["test"] == 5


def test_preprocessed_test_set_with_alpha_copy(tmp_path):
    # the Composition-1k test set as later papers distribute it: merged/, alpha_copy/ and trimaps/, one file each
    # per composite, <fg>_<i>.png, fg names with underscores
    from data_prep.plans import composition1k_test_files, is_composition1k_test_set

    ts = tmp_path / "Composition-1k-testset"
    rng = np.random.default_rng(1)
    for sub in ("merged", "alpha_copy", "trimaps"):
        (ts / sub).mkdir(parents=True)
    for i in range(2):
        name = f"16452523375_08591714cf_o_{i}.png"
        Image.fromarray((rng.random((32, 32, 3)) * 255).astype(np.uint8)).save(ts / "merged" / name)
        Image.fromarray((rng.random((32, 32)) * 255).astype(np.uint8)).save(ts / "alpha_copy" / name)
        Image.fromarray(np.full((32, 32), 128, np.uint8)).save(ts / "trimaps" / name)
    assert is_composition1k_test_set(ts)
    bad: list = []
    files = composition1k_test_files(ts, bad)
    assert bad == []
    assert [(stem, a.name, t.name) for stem, _m, a, t in files] == [
        (f"16452523375_08591714cf_o_{i}", f"16452523375_08591714cf_o_{i}.png", f"16452523375_08591714cf_o_{i}.png")
        for i in range(2)]


def test_frames_of_one_clip_are_held_out_together():
    # Composition-1k's training set holds clips (archeology_00000 ... archeology_00245): a frame in validation with
    # its neighbours in training would flatter the validation score
    import re

    from data_prep.plans import split_foregrounds

    names = ([f"archeology_{i:05d}" for i in range(0, 250, 5)] + [f"mmtest_{i:05d}" for i in range(0, 240, 5)]
             + [f"locked_{i:05d}" for i in range(0, 80, 5)] + [f"object {i}" for i in range(60)])
    pairs = [(n, Path(f"{n}.png"), Path(f"{n}.png")) for n in names]
    for seed in range(5):
        train, val, test = split_foregrounds(pairs, seed, 20, 10)
        assert (len(val), len(test)) == (20, 10) and len(train) + 30 == len(pairs)

        def clips(side: list) -> set[str]:
            return {re.sub(r"_\d+$", "", p[0]) for p in side}

        assert not clips(train) & clips(val) and not clips(train) & clips(test) and not clips(val) & clips(test)


def test_composition1k_test_composites_made_from_voc_backgrounds(tmp_path, capsys):
    # --test-bg: Adobe's composition of the shipped Test_set, each test foreground on its run of backgrounds from
    # test_bg_names.txt, scored on the released <fg>_<i> trimaps
    from data_prep.compositing import composite, fit_background

    root, bg = _layout(tmp_path)
    test = root / "Test_set"
    (test / "merged").rename(tmp_path / "merged_elsewhere")
    group = test / "Adobe-licensed images"
    (group / "fg").mkdir()
    rng = np.random.default_rng(3)
    for t in ("cobweb", "pot.plant"):
        Image.fromarray((rng.random((48, 64, 3)) * 255).astype(np.uint8)).save(group / "fg" / f"{t}.png")
    voc = tmp_path / "VOC" / "JPEGImages"
    voc.mkdir(parents=True)
    bg_names = [f"2008_00000{i}.jpg" for i in range(6)]
    for i, name in enumerate(bg_names):  # some smaller than the foregrounds: scaled up, then cropped
        side = (40, 90)[i % 2]
        Image.fromarray((rng.random((side, side, 3)) * 255).astype(np.uint8)).save(voc / name, quality=95)
    (test / "test_fg_names.txt").write_text("cobweb.png\npot.plant.png\n")
    (test / "test_bg_names.txt").write_text("\n".join(bg_names) + "\n")
    out = tmp_path / "out"
    args = ["composition1k", "--root", str(root), "--bg", str(bg), "--out", str(out), "--workers", "1",
            "--test-bg", str(voc)]
    assert main(args) == 0
    tests = {k: m for s in manifest(out)["shards"] if s["kind"] == "test" for k, m in iter_samples(out / s["name"])}
    assert sorted(tests) == ["cobweb_0", "cobweb_1", "cobweb_2", "pot_plant_0", "pot_plant_1", "pot_plant_2"]
    m = tests["pot_plant_1"]  # the second foreground's second background of its three: bg_names[4]
    fg = np.asarray(Image.open(group / "fg" / "pot.plant.png").convert("RGB"))
    alpha = np.asarray(Image.open(group / "alpha" / "pot.plant.png"))
    want = composite(fg, alpha, fit_background(np.asarray(Image.open(voc / bg_names[4]).convert("RGB")), 48, 64))
    assert json.loads(m["meta.json"])["bg"] == bg_names[4]
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(m["image.png"]))), want)
    released = np.asarray(Image.open(group / "trimaps" / "pot.plant_1.png"))
    got = np.asarray(Image.open(io.BytesIO(m["trimap.png"])))
    assert np.array_equal(got[released == 0], released[released == 0]) and got[20, 20] == 128
    assert verify_dataset(out) == []

    (voc / bg_names[5]).unlink()  # a background the user does not have is named
    assert main(args + ["--out", str(tmp_path / "out2")]) == 2
    assert bg_names[5] in capsys.readouterr().err
