"""Every bad-input case of data_prep: default stops (non-zero, names file + problem, nothing incomplete written);
--skip-bad records it under manifest "skipped" and goes on; convertible inputs are converted correctly."""
from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_prep.cli import main
from data_prep.reader import iter_samples
from data_prep.verify import verify_dataset

from .conftest import counts, manifest


def _run(raw: dict[str, Path], out: Path, *extra: str) -> int:
    return main(["folders", "--fg", str(raw["fg"]), "--alpha", str(raw["alpha"]), "--bg", str(raw["bg"]),
                 "--out", str(out), "--workers", "1", "--shard-size", "8KB", *extra])


def _nothing_incomplete(out: Path) -> None:
    assert not (out / "manifest.json").exists()
    assert not list(out.glob(".*.partial"))
    assert verify_dataset(out) != []  # a directory without manifest never passes verify


def _fg_members(out: Path) -> dict[str, dict[str, bytes]]:
    return {k: m for s in manifest(out)["shards"] if s["kind"] == "fg" for k, m in iter_samples(out / s["name"])}


def _truncate(p: Path) -> None:
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])


CASES = {
    # name: (mutator(raw) -> the offending file, problem words, expected fg count with --skip-bad)
    "truncated_image": (lambda r: (_truncate(r["fg"] / "obj02.png"), r["fg"] / "obj02.png")[1],
                        "corrupt or truncated", 5),
    "corrupt_image": (lambda r: ((r["alpha"] / "obj03.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really"),
                                 r["alpha"] / "obj03.png")[1], "corrupt or truncated", 5),
    "size_mismatch": (lambda r: (Image.open(r["alpha"] / "obj04.png").resize((40, 40)).save(r["alpha"] / "obj04.png"),
                                 r["fg"] / "obj04.png")[1], "but its alpha", 5),
    "alpha_colour_channels": (lambda r: (Image.merge("RGB", [Image.open(r["alpha"] / "obj00.png")] * 2 + [
        Image.new("L", Image.open(r["alpha"] / "obj00.png").size, 7)]).save(r["alpha"] / "obj00.png"),
        r["alpha"] / "obj00.png")[1], "channels whose colours differ", 5),
    "fg_without_alpha": (lambda r: ((r["alpha"] / "obj05.png").unlink(), r["fg"] / "obj05.jpg")[1],
                         "has no alpha", 5),
    "alpha_without_fg": (lambda r: ((r["fg"] / "obj05.jpg").unlink(), r["alpha"] / "obj05.png")[1],
                         "has no foreground", 5),
    "non_image_file": (lambda r: ((r["fg"] / "notes.txt").write_text("hello"), r["fg"] / "notes.txt")[1],
                       "not an image file", 6),
    "too_small": (lambda r: (Image.new("RGB", (20, 20), (9, 9, 9)).save(r["fg"] / "tiny.png"),
                             Image.new("L", (20, 20), 255).save(r["alpha"] / "tiny.png"), r["fg"] / "tiny.png")[2],
                  "too small", 6),
    "duplicate_stems": (lambda r: (shutil.copy(r["fg"] / "obj01.jpg", r["fg"] / "obj01.png"),
                                   r["fg"] / "obj01.jpg")[1], "duplicate foreground stem", 5),
    "bad_background": (lambda r: (_truncate(r["bg"] / "bg01.jpg"), r["bg"] / "bg01.jpg")[1],
                       "corrupt or truncated", 6),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_stops_or_is_skipped(case, raw, tmp_path, capsys):
    mutate, words, n_fg = CASES[case]
    bad_file = mutate(raw)
    out = tmp_path / "out"
    assert _run(raw, out) != 0
    err = capsys.readouterr().err
    assert str(bad_file) in err and words in err, err
    _nothing_incomplete(out)

    assert _run(raw, out, "--skip-bad") == 0
    doc = manifest(out)
    assert any(s["path"] == str(bad_file) and words in s["problem"] for s in doc["skipped"]), doc["skipped"]
    assert counts(out)["fg"] == n_fg
    assert verify_dataset(out) == []


def test_missing_and_empty_directories(raw, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["folders", "--fg", str(tmp_path / "nope"), "--alpha", str(raw["alpha"]), "--bg", str(raw["bg"]),
                 "--out", str(out)]) == 2
    assert "nope: foreground directory does not exist" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    for flag in ("--alpha", "--bg"):
        args = {"--fg": raw["fg"], "--alpha": raw["alpha"], "--bg": raw["bg"], flag: empty}
        assert main(["folders", *[x for k, v in args.items() for x in (k, str(v))], "--out", str(out),
                     "--skip-bad"]) == 2
        assert f"{empty}: " in capsys.readouterr().err
    assert not (out / "manifest.json").exists()


def _decoded(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def test_conversions_rgba_16bit_palette_grey(raw, tmp_path):
    """RGBA fg -> RGB (its own alpha channel ignored); 16-bit alpha scaled by 1/257; palette and grey fgs -> RGB;
    'LA' and grey-as-RGB alphas accepted."""
    rgb0 = np.asarray(Image.open(raw["fg"] / "obj00.png").convert("RGB"))
    Image.fromarray(np.dstack([rgb0, np.full(rgb0.shape[:2], 77, np.uint8)]), "RGBA").save(raw["fg"] / "obj00.png")
    a2 = np.asarray(Image.open(raw["alpha"] / "obj02.png"))
    a16 = a2.astype(np.uint16) * 257
    a16[0, 0], a16[0, 1] = 32896, 65535  # 32896/257 = 128.0
    Image.fromarray(a16).save(raw["alpha"] / "obj02.png")  # mode I;16
    assert Image.open(raw["alpha"] / "obj02.png").mode.startswith("I")
    pal = Image.open(raw["fg"] / "obj04.png").convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    pal.save(raw["fg"] / "obj04.png")
    grey = Image.open(raw["fg"] / "obj01.jpg").convert("L")
    grey.save(raw["fg"] / "obj01.jpg")
    a3 = np.asarray(Image.open(raw["alpha"] / "obj03.png"))
    Image.fromarray(np.dstack([a3, np.full_like(a3, 255)]), "LA").save(raw["alpha"] / "obj03.png")
    a5 = np.asarray(Image.open(raw["alpha"] / "obj05.png"))
    Image.fromarray(np.dstack([a5] * 3)).save(raw["alpha"] / "obj05.png")

    out = tmp_path / "out"
    assert _run(raw, out) == 0
    fgs = _fg_members(out)
    assert set(fgs["obj00"]) == {"fg.png", "alpha.png", "meta.json"}
    assert np.array_equal(_decoded(fgs["obj00"]["fg.png"]), rgb0)
    got16 = _decoded(fgs["obj02"]["alpha.png"])
    expect = a2.copy()
    expect[0, 0], expect[0, 1] = 128, 255
    assert got16.dtype == np.uint8 and np.array_equal(got16, expect)
    assert np.array_equal(_decoded(fgs["obj04"]["fg.png"]), np.asarray(pal.convert("RGB")))
    g = _decoded(fgs["obj01"]["fg.jpg"] if "fg.jpg" in fgs["obj01"] else fgs["obj01"]["fg.png"])
    assert g.ndim == 3 and np.array_equal(g[..., 0], np.asarray(Image.open(raw["fg"] / "obj01.jpg")))
    assert np.array_equal(_decoded(fgs["obj03"]["alpha.png"]), a3)
    assert np.array_equal(_decoded(fgs["obj05"]["alpha.png"]), a5)
    assert manifest(out)["skipped"] == []
    assert verify_dataset(out) == []


def test_skip_bad_rerun_updates_skipped_without_rewriting_shards(raw, tmp_path):
    out = tmp_path / "out"
    assert _run(raw, out, "--skip-bad") == 0
    assert manifest(out)["skipped"] == []
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.tar")}
    (raw["bg"] / "readme.md").write_text("not an image")
    assert _run(raw, out, "--skip-bad") == 0
    assert [s["path"] for s in manifest(out)["skipped"]] == [str(raw["bg"] / "readme.md")]
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.tar")} == stamps


def test_exif_rotated_jpeg_is_re_encoded_not_passed_through(raw, tmp_path):
    """A JPEG with an EXIF orientation would be rotated by DALI's decoder but not by the alpha: store pixels as-is."""
    src = raw["fg"] / "obj01.jpg"
    im = Image.open(src)
    exif = Image.Exif()
    exif[0x0112] = 6
    im.save(src, exif=exif, quality=95)
    out = tmp_path / "out"
    assert _run(raw, out) == 0
    m = _fg_members(out)["obj01"]
    assert "fg.png" in m and "fg.jpg" not in m
    assert np.array_equal(_decoded(m["fg.png"]), np.asarray(Image.open(src)))


def test_unwritable_outputs_give_an_error_line_not_a_traceback(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    rc = main(["synthetic", "--out", str(blocker / "shards"), "--count", "2", "--size", "64"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and str(blocker) in err and "Traceback" not in err
    good = tmp_path / "good"
    assert main(["synthetic", "--out", str(good), "--count", "2", "--size", "64", "--seed", "0"]) == 0
    capsys.readouterr()
    rc = main(["stats", str(good), "--preview", str(blocker / "preview.png")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and "Traceback" not in err
    assert verify_dataset(good) == []  # what was written before stays sound


def test_bad_inputs_at_the_end_of_a_kind_are_still_listed(tmp_path: Path) -> None:
    """Skipped inputs after a kind's last written shard (or of a kind with no good sample at all) reach the manifest."""
    from data_prep.build import build
    from data_prep.images import BadInputError, encode_png
    from data_prep.tasks import Task, encoder

    @encoder("test_fg_or_bad")
    def _fg_or_bad(key: str) -> dict:
        if key.startswith("bad"):
            raise BadInputError(f"/inputs/{key}.png", "truncated")
        pixels = np.zeros((8, 8), np.uint8)
        return {"__key__": key, "fg.png": encode_png(np.zeros((8, 8, 3), np.uint8)), "alpha.png": encode_png(pixels),
                "meta.json": b"{}"}

    plan = {"fg": [Task("fg", "test_fg_or_bad", (k,), k) for k in ("good1", "bad1", "bad2")],
            "val": [Task("val", "test_fg_or_bad", ("bad3",), "bad3")]}
    result = build(tmp_path / "out", {"command": "test"}, plan, workers=1, shard_bytes=1 << 20, skip_bad=True,
                   overwrite=False)
    listed = sorted(s["path"] for s in json.loads((tmp_path / "out" / "manifest.json").read_text())["skipped"])
    assert listed == ["/inputs/bad1.png", "/inputs/bad2.png", "/inputs/bad3.png"]
    assert len(result.skipped) == 3 and result.samples == 1


def test_a_matte_kept_in_the_transparency_channel(tmp_path):
    # a cut-out's matte saved as transparency over a flat fill: reading the grey alone gave an opaque matte
    from data_prep.images import BadInputError, load_alpha

    g = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (8, 1))
    cases = {"rgba_white": Image.fromarray(np.dstack([np.full_like(g, 255)] * 3 + [g]), "RGBA"),
             "la_black": Image.fromarray(np.dstack([np.zeros_like(g), g]), "LA"),
             "la_same": Image.fromarray(np.dstack([g, g]), "LA"),
             "la_opaque": Image.fromarray(np.dstack([g, np.full_like(g, 255)]), "LA")}
    for name, im in cases.items():
        im.save(tmp_path / f"{name}.png")
        assert np.array_equal(load_alpha(tmp_path / f"{name}.png"), g), name
    Image.fromarray(np.dstack([g, g[:, ::-1]]), "LA").save(tmp_path / "both.png")
    with pytest.raises(BadInputError, match="grey matte and a transparency channel"):
        load_alpha(tmp_path / "both.png")


def test_eight_bit_values_in_a_sixteen_bit_matte_are_refused(tmp_path):
    # scaled by 1/257 they would become a matte of 0s and 1s
    from data_prep.images import BadInputError, load_alpha

    Image.fromarray(np.array([[0, 128], [255, 64]], np.uint16)).save(tmp_path / "a.png")
    assert Image.open(tmp_path / "a.png").mode.startswith("I")
    with pytest.raises(BadInputError, match="8-bit values saved in a 16-bit file"):
        load_alpha(tmp_path / "a.png")
