"""Every public dataset layout trains from its fixture tree: prepared by its data_prep subcommand, then a real
`run_training` (Ray Train on the embedded local Ray, MLflow on SQLite) of a few steps. Image + alpha layouts are
prepared with --photos and train on a mix of real-photo and composite batches."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from data_prep.cli import main as data_prep_main
from jobs.config import load_config
from jobs.trainer import run_training
from pipeline.mixed import photo_batches
from tests.test_data_prep.test_layouts import CASES, IMAGE_LAYOUTS, _bgs, _tree
from tests.test_jobs.conftest import DEMO_CONFIG, TINY

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("layout", sorted(CASES))
def test_layout_trains_from_its_fixture(layout: str, local_ray: None, tmp_path: Path) -> None:
    root, out = tmp_path / layout, tmp_path / "shards"
    _tree(layout, root)
    bg = [] if layout == "hhm50k" else ["--bg", str(_bgs(tmp_path / "bg"))]
    photos = ["--photos"] if layout in IMAGE_LAYOUTS else []
    args, _, _ = CASES[layout]
    assert data_prep_main([layout, "--root", str(root), *bg, "--out", str(out), "--workers", "1",
                           "--val-count", "1", *photos, *args]) == 0
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    overrides = [*TINY, f"data.dataset_dir={out}", f"run.storage_path={tmp_path / 'ray'}", f"run.name={layout}",
                 f"tracking.tracking_uri={uri}", "tracking.log_model=false", "scaling.num_workers=1",
                 "data.iterations_per_epoch=4", "data.crop_size=32", "data.num_threads=1"]
    if photos:  # seed 1: the 4 batches are photo, composite, composite, photo
        assert list(photo_batches(1, 0, 4, 0.5)) == [True, False, False, True]
        overrides += ["data.photo_ratio=0.5", "run.seed=1"]
    outcome = run_training(load_config(DEMO_CONFIG, overrides))
    assert outcome.step == 4
    losses = [m.value for m in MlflowClient(uri).get_metric_history(outcome.mlflow_run_id, "train/loss")]
    assert len(losses) == 4 and all(math.isfinite(v) and v > 0 for v in losses)
