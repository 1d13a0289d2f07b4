"""Trimaps for users (`python -m data_prep trimap`), checked on the real alpha mattes of datasets/real-dev."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from data_prep.cli import main
from data_prep.images import load_alpha
from data_prep.trimaps import (
    BandRadius,
    TrimapError,
    binarize_mask,
    scaled_radius,
    trimap_from_alpha,
    trimap_from_mask,
)

REAL_DEV = Path(__file__).resolve().parents[2] / "datasets" / "real-dev"
ALPHAS = sorted((REAL_DEV / "alpha").glob("*.png"))


def _disk(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def _far_from(region: np.ndarray, radius: int) -> np.ndarray:
    """Pixels farther than `radius` (disk) from every pixel of `region`."""
    return ~cv2.dilate(region.astype(np.uint8), _disk(radius)).astype(bool)


@pytest.mark.parametrize("band", [None, 10, BandRadius(fraction=0.08, min_radius=2)], ids=["scaled", "r10", "f08"])
def test_alpha_trimaps_of_real_mattes_are_correct(band: object) -> None:
    assert len(ALPHAS) == 16
    for path in ALPHAS:
        alpha = load_alpha(path)
        made = trimap_from_alpha(alpha, band)  # type: ignore[arg-type]
        trimap, r = made.trimap, made.radius
        assert set(np.unique(trimap).tolist()) <= {0, 128, 255}
        soft = (alpha > 0) & (alpha < 255)
        assert soft.any() and np.all(trimap[soft] == 128), path.name          # every soft pixel is unknown
        assert np.all(trimap[(alpha == 0) & _far_from(alpha > 0, r)] == 0), path.name       # far background
        assert np.all(trimap[(alpha == 255) & _far_from(alpha < 255, r)] == 255), path.name  # solid interior
        assert np.all(trimap[trimap == 0] == 0) and np.all(alpha[trimap == 0] == 0)         # 0 only on alpha 0
        assert np.all(alpha[trimap == 255] == 255)                                         # 255 only on alpha 255
        assert (trimap == 255).any() and (trimap == 0).any(), path.name


def test_scaled_radius_follows_the_documented_formula() -> None:
    assert scaled_radius(250 * 250, 0.04, 3) == 10
    assert scaled_radius(1000 * 1000, 0.04, 3) == 40
    assert scaled_radius(0.0, 0.04, 3) == 3
    alpha = load_alpha(REAL_DEV / "alpha" / "guineafowl.png")
    area = alpha.sum(dtype=np.int64) / 255.0
    assert trimap_from_alpha(alpha).radius == max(3, round(0.04 * np.sqrt(area)))


def test_mask_trimap_puts_a_band_on_the_mask_boundary() -> None:
    alpha = load_alpha(REAL_DEV / "alpha" / "frog.png")
    mask = np.where(alpha >= 128, 255, 0).astype(np.uint8)
    made = trimap_from_mask(mask, 6)
    inside, r = mask > 0, 6
    boundary = inside & ~cv2.erode(inside.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    assert np.all(made.trimap[boundary] == 128)
    assert np.all(made.trimap[inside & _far_from(~inside, r)] == 255)
    assert np.all(made.trimap[~inside & _far_from(inside, r)] == 0)
    np.testing.assert_array_equal(trimap_from_mask((mask > 0).astype(np.uint8), 6).trimap, made.trimap)  # 0/1 mask


def test_soft_mattes_and_trimaps_are_not_masks() -> None:
    with pytest.raises(TrimapError, match="soft alpha matte"):
        binarize_mask(np.tile(np.arange(256, dtype=np.uint8), (4, 1)))
    with pytest.raises(TrimapError, match="trimap already"):
        binarize_mask(np.array([[0, 128, 255]], np.uint8))


def _cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_cli_folder_writes_same_named_pngs_and_guards_its_outputs(capsys: pytest.CaptureFixture,
                                                                   tmp_path: Path) -> None:
    src = tmp_path / "alpha"
    src.mkdir()
    for name in ("frog", "otter"):
        (src / f"{name}.png").write_bytes((REAL_DEV / "alpha" / f"{name}.png").read_bytes())
    out = tmp_path / "trimaps"
    rc, stdout, _ = _cli(capsys, "trimap", "--alpha", str(src), "--out", str(out), "--radius", "7")
    assert rc == 0 and "radius 7 px (fixed)" in stdout
    assert sorted(p.name for p in out.iterdir()) == ["frog.png", "otter.png"]
    written = np.asarray(Image.open(out / "frog.png"))
    np.testing.assert_array_equal(written, trimap_from_alpha(load_alpha(src / "frog.png"), 7).trimap)

    before = (out / "frog.png").read_bytes()
    rc, _, err = _cli(capsys, "trimap", "--alpha", str(src), "--out", str(out), "--radius", "3")
    assert rc == 2 and "exists" in err and "--overwrite" in err and (out / "frog.png").read_bytes() == before
    rc, _, err = _cli(capsys, "trimap", "--alpha", str(src), "--out", str(out), "--radius", "3", "--overwrite")
    assert rc == 0 and (out / "frog.png").read_bytes() != before

    rc, _, err = _cli(capsys, "trimap", "--alpha", str(src), "--out", str(src))
    assert rc == 2 and "input folder" in err
    rc, _, err = _cli(capsys, "trimap", "--mask", str(src / "frog.png"), "--out", str(src / "frog.png"))
    assert rc == 2 and "over the input file" in err


def test_cli_names_a_bad_file(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    rc, _, err = _cli(capsys, "trimap", "--alpha", str(broken), "--out", str(tmp_path / "t.png"))
    assert rc == 2 and err.startswith("error: ") and "broken.png" in err and "--skip-bad" not in err
    rc, _, err = _cli(capsys, "trimap", "--alpha", str(REAL_DEV / "merged" / "frog_0.png"),
                      "--out", str(tmp_path / "t.png"))
    assert rc == 2 and "frog_0.png" in err and "grey" in err
    rc, _, err = _cli(capsys, "trimap", "--mask", str(REAL_DEV / "trimaps" / "frog_0.png"),
                      "--out", str(tmp_path / "t.png"))
    assert rc == 2 and "frog_0.png" in err and "trimap already" in err
    assert not (tmp_path / "t.png").exists()


def test_cli_help_explains_the_options(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["trimap", "--help"])
    text = capsys.readouterr().out
    for needle in ("--alpha", "--mask", "--radius", "--radius-fraction", "sqrt", "--overwrite", "0/128/255"):
        assert needle in text
