"""`stats` and `--preview` run on a real dataset and report what the manifest says."""
from __future__ import annotations

import json

import numpy as np
from PIL import Image

from .conftest import counts, run_cli


def test_stats_json_and_preview(synthetic_dataset, tmp_path):
    png = tmp_path / "sheet.png"
    res = run_cli("stats", str(synthetic_dataset), "--json", "--preview", str(png), "--rows", "4", check=True)
    st = json.loads(res.stdout[: res.stdout.rindex("}") + 1])
    assert {k: v["samples"] for k, v in st["kinds"].items()} == counts(synthetic_dataset)
    for kind in ("fg", "val", "test"):
        assert 0.0 < st["kinds"][kind]["unknown_fraction_mean"] < 0.8
    assert st["kinds"]["fg"]["width"][1] == 320 or st["kinds"]["fg"]["height"][1] == 320
    sheet = np.asarray(Image.open(png))
    assert sheet.ndim == 3 and sheet.shape[0] >= 3 * 192 and sheet.shape[1] >= 6 * 192
    assert sheet.std() > 20  # real content, not a blank canvas
    text = run_cli("stats", str(synthetic_dataset), check=True).stdout
    assert "fg" in text and "unknown" in text
