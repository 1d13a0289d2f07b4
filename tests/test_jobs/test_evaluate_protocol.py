"""The evaluation protocol (region metrics, categories, error rows, TTA options) and predict --mask, on real-dev."""
from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from jobs.cli import main
from data_prep.trimaps import BandRadius
from jobs.errors import JobError
from jobs.evaluate import ALL_METRICS, category_of, failed_rows, score

REAL_DEV = Path(__file__).resolve().parents[2] / "datasets" / "real-dev"
SIZE = (48, 40)  # (width, height): real-dev scaled down keeps the CPU work tiny


class TrimapNet(nn.Module):
    """Predicts trimap/255: a deterministic 'model' with a known score."""

    def __init__(self) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 3:4] + self.p


def _copy_small(name: str, key: str, root: Path) -> None:
    """real-dev's `name` scaled to SIZE as `key` in a Test_set layout (nearest for alpha and trimap)."""
    Image.open(REAL_DEV / "merged" / f"{name}_0.png").convert("RGB").resize(SIZE, Image.BILINEAR).save(
        root / "merged" / f"{key}_0.png")
    Image.open(REAL_DEV / "alpha" / f"{name}.png").resize(SIZE, Image.NEAREST).save(root / "alpha" / f"{key}.png")
    Image.open(REAL_DEV / "trimaps" / f"{name}_0.png").resize(SIZE, Image.NEAREST).save(
        root / "trimaps" / f"{key}_0.png")


def make_set(root: Path, broken: bool) -> Path:
    for sub in ("merged", "alpha", "trimaps"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for name, key in (("frog", "animals__frog"), ("otter", "animals__otter"), ("christmas_tree", "plants__tree")):
        _copy_small(name, key, root)
    if broken:
        _copy_small("cep", "plants__cep", root)
        (root / "merged" / "plants__cep_0.png").write_bytes(b"truncated")        # unreadable
        _copy_small("doe", "animals__doe", root)
        Image.new("L", (SIZE[0] + 1, SIZE[1]), 0).save(root / "alpha" / "animals__doe.png")  # size mismatch
    return root


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_score_writes_region_columns_categories_and_error_rows(tmp_path: Path) -> None:
    from model.inference import predict_alpha
    from model.metrics import evaluate_all

    root = make_set(tmp_path / "set", broken=True)
    means, rows, _ = score(TrimapNet(), str(root), tmp_path / "out" / "per_image.csv")
    table = {r["key"]: r for r in _rows(tmp_path / "out" / "per_image.csv")}
    assert list(next(iter(table.values()))) == ["key", *ALL_METRICS, "category", "error"]
    assert set(table) == {"animals__frog_0", "animals__otter_0", "plants__tree_0", "plants__cep_0", "animals__doe_0"}
    assert "plants__cep_0.png" in table["plants__cep_0"]["error"] and table["plants__cep_0"]["SAD"] == ""
    assert "differ in size" in table["animals__doe_0"]["error"]
    image = np.asarray(Image.open(root / "merged" / "animals__frog_0.png"))
    alpha = np.asarray(Image.open(root / "alpha" / "animals__frog.png"))
    trimap = np.asarray(Image.open(root / "trimaps" / "animals__frog_0.png"))
    expected = evaluate_all(predict_alpha(TrimapNet(), image, trimap), alpha, trimap)
    for k in ALL_METRICS:
        assert float(table["animals__frog_0"][k]) == pytest.approx(expected[k], rel=1e-9, abs=1e-12)
    ok = [r for r in rows if not r["error"]]
    assert len(ok) == 3 and means["SAD"] == pytest.approx(np.mean([r["SAD"] for r in ok]))
    cats = {r["category"]: r for r in _rows(tmp_path / "out" / "per_category.csv")}
    assert set(cats) == {"animals", "plants"} and float(cats["animals"]["images"]) == 2
    animals = [r for r in ok if r["category"] == "animals"]
    assert float(cats["animals"]["MAD"]) == pytest.approx(np.mean([r["MAD"] for r in animals]))


class OutOfMemoryOnFirstImage(TrimapNet):
    """Raises what a GPU raises when an input does not fit in its memory, on its first call only."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 30.00 GiB")
        return super().forward(x)


def test_running_out_of_gpu_memory_fails_that_image_only(tmp_path: Path) -> None:
    from jobs.inference_options import InferenceOptions
    from jobs.predict import matte_of

    root = make_set(tmp_path / "set", broken=False)
    means, rows, _ = score(OutOfMemoryOnFirstImage(), str(root), tmp_path / "out" / "per_image.csv")
    failed = failed_rows(rows)
    assert len(rows) == 3 and len(failed) == 1 and means  # the other images are scored
    assert "out of GPU memory" in failed[0]["error"] and "smaller --max-pixels (now 4194304)" in failed[0]["error"]
    image = next((root / "merged").iterdir())
    with pytest.raises(JobError, match=f"{image}: out of GPU memory"):
        matte_of(OutOfMemoryOnFirstImage(), image, root / "trimaps" / image.name, from_mask=False,
                 band=BandRadius(), options=InferenceOptions())


def test_category_convention() -> None:
    assert category_of("SO__hair_3") == "SO" and category_of("hair_3") == "uncategorised"
    assert category_of("__x") == "uncategorised"


def test_evaluate_cli_fails_after_scoring_the_rest_and_moves_no_alias(
        registered: dict, tmp_path: Path, capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture) -> None:
    from mlflow.tracking import MlflowClient

    from jobs.evaluate import alias_holder

    client = MlflowClient(registered["uri"], registered["uri"])
    root = make_set(tmp_path / "set", broken=True)
    rc = main(["evaluate", "--model", "models:/a2u-matting/1", "--data", str(root), "--out", str(tmp_path / "e1"),
               "--set-alias", "best", "--tta", "flip", "--pad", "zero", "--max-pixels", "1000000"])
    captured = capsys.readouterr()
    assert rc == 1, captured.err
    assert "error: plants__cep_0:" in captured.err and "2 image(s) could not be scored" in captured.err
    assert "best not moved" in captured.out and "animals (2 images)" in captured.out
    assert "tta=flip,pad=zero,max_pixels=1000000" in captured.out
    assert alias_holder(client, "a2u-matting", "best") is None
    assert len(_rows(tmp_path / "e1" / "per_image.csv")) == 5

    root = make_set(tmp_path / "good", broken=False)
    rc = main(["evaluate", "--model", "models:/a2u-matting/1", "--data", str(root), "--out", str(tmp_path / "e2"),
               "--set-alias", "best", "--tta", "flip"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert alias_holder(client, "a2u-matting", "best") == "1"
    run = client.search_runs([client.get_experiment_by_name("a2u-evaluation").experiment_id],
                             order_by=["attributes.start_time DESC"], max_results=1)[0]
    assert run.data.tags["a2u.inference"].startswith("tta=flip,pad=reflect")
    assert {"test/MAD", "test/SAD_all", "test/animals/SAD", "test/plants/MAD"} <= set(run.data.metrics)

    # a second version of the same weights: the holder's score is found with the same options (the tag filter),
    # or made afresh with other options; equal scores never move the alias
    from jobs.tracking import ensure_experiment, log_and_register_model

    run_id = client.create_run(ensure_experiment(registered["uri"], "export-test")).info.run_id
    assert str(log_and_register_model(registered["net"], registered["uri"], run_id, "a2u-matting",
                                  serialization_format="pickle")["version"]) == "2"
    for tta in ("flip", "none"):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="jobs.evaluate"):
            rc = main(["evaluate", "--model", "models:/a2u-matting/2", "--data", str(root), "--out",
                       str(tmp_path / f"e3{tta}"), "--set-alias", "best", "--tta", tta])
        captured = capsys.readouterr()
        assert rc == 0 and "best stays on version 1" in captured.out, captured.err
        assert ("scoring the current best" in caplog.text) == (tta == "none")


def test_predict_with_a_mask_runs_end_to_end_on_a_real_image(registered: dict, tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture,
                                                              capsys: pytest.CaptureFixture) -> None:
    from data_prep.trimaps import trimap_from_mask

    alpha = np.asarray(Image.open(REAL_DEV / "alpha" / "squirrel.png"))
    mask = np.where(alpha >= 128, 255, 0).astype(np.uint8)
    Image.fromarray(mask).save(tmp_path / "squirrel_0.png")
    out = tmp_path / "matte.png"
    with caplog.at_level(logging.INFO, logger="jobs.predict"):
        rc = main(["predict", "--model", "models:/a2u-matting@champion", "--image",
                   str(REAL_DEV / "merged" / "squirrel_0.png"), "--mask", str(tmp_path / "squirrel_0.png"),
                   "--out", str(out), "--mask-radius", "6"])
    assert rc == 0, capsys.readouterr().err
    assert "unknown band 13 px wide (radius 6 px (fixed))" in caplog.text
    assert "inference path: fast CPU path" in caplog.text  # the default on CPU, and said in the log
    matte = np.asarray(Image.open(out))
    trimap = trimap_from_mask(mask, 6).trimap
    assert matte.shape == alpha.shape
    np.testing.assert_array_equal(matte[trimap != 128], trimap[trimap != 128])
    rc = main(["predict", "--model", "models:/a2u-matting@champion", "--image",
               str(REAL_DEV / "merged" / "squirrel_0.png"), "--mask", str(REAL_DEV / "alpha" / "squirrel.png"),
               "--out", str(tmp_path / "other.png")])
    err = capsys.readouterr().err
    assert rc == 2 and "squirrel.png" in err and "not a binary mask" in err


def test_score_on_test_shards_has_no_categories(synthetic_dataset: Path, tmp_path: Path) -> None:
    means, rows, fingerprint = score(TrimapNet(), str(synthetic_dataset), tmp_path / "per_image.csv")
    assert rows and not any(r["error"] for r in rows) and fingerprint.startswith("shards:")
    assert {r["category"] for r in rows} == {"uncategorised"} and not (tmp_path / "per_category.csv").exists()
    assert means["SAD_unknown"] == pytest.approx(means["SAD"]) and means["SAD_fg"] == 0.0 == means["SAD_bg"]
