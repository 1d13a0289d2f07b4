"""The real evaluation set and the folder reader behind `jobs evaluate` and benchmarks/bench_quality.py."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from jobs.errors import JobError
from jobs.evaluate import open_dataset, trimap_only_score

REAL_DEV = Path(__file__).resolve().parents[2] / "datasets" / "real-dev"


def test_real_dev_trimap_only_floor_matches_its_readme() -> None:
    """The reference scores in datasets/real-dev/README.md, recomputed: reader, trimaps and metrics agree."""
    _, count, _ = open_dataset(str(REAL_DEV))
    assert count == 16
    floor = trimap_only_score(str(REAL_DEV))
    assert floor["SAD"] == pytest.approx(10.72, abs=0.005)
    assert floor["MSE"] == pytest.approx(0.2354, abs=5e-5)
    assert floor["Grad"] == pytest.approx(22.37, abs=0.01)
    assert floor["Conn"] == pytest.approx(10.76, abs=0.005)


def test_folder_without_a_trimap_or_with_a_bad_name_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "set"
    for sub in ("merged", "alpha", "trimaps"):
        (root / sub).mkdir(parents=True)
    shutil.copy(REAL_DEV / "merged" / "frog_0.png", root / "merged" / "frog_0.png")
    shutil.copy(REAL_DEV / "alpha" / "frog.png", root / "alpha" / "frog.png")
    with pytest.raises(JobError, match="holds no images"):
        open_dataset(str(root))
    shutil.copy(REAL_DEV / "trimaps" / "frog_0.png", root / "trimaps" / "toad_0.png")
    with pytest.raises(JobError, match=r"merged/frog_0\.png: no trimap frog_0\.\* or frog\.\* in"):
        open_dataset(str(root))
    shutil.copy(REAL_DEV / "trimaps" / "frog_0.png", root / "trimaps" / "frog_0.png")
    assert open_dataset(str(root))[1] == 1
    shutil.copy(REAL_DEV / "merged" / "frog_0.png", root / "merged" / "toad.png")
    with pytest.raises(JobError, match="not <fg>_<i>"):
        open_dataset(str(root))
