"""`jobs predict --ray`: two Ray Data actors on a two-node cluster on this machine write the same matte files as
local `predict`, list a failed image in predictions.csv with a non-zero exit, and skip mattes already written."""
from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_prep.compositing import composite, fit_background, trimap_from_alpha
from data_prep.synthetic import make_background, make_foreground
from jobs.cli import main

pytestmark = pytest.mark.slow

MODEL = "models:/a2u-matting/1"


def _inputs(root: Path, names: list[str]) -> tuple[Path, Path]:
    images, trimaps = root / "images", root / "trimaps"
    images.mkdir(parents=True)
    trimaps.mkdir()
    for i, name in enumerate(names):
        fg, alpha, _ = make_foreground(11, i, 48 + 16 * i)
        photo = composite(fg, alpha, fit_background(make_background(11, i, 96), *alpha.shape))
        Image.fromarray(photo).save(images / f"{name}.png")
        Image.fromarray(trimap_from_alpha(alpha)).save(trimaps / f"{name}.png")
    return images, trimaps


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _csv(path: Path) -> dict[str, dict]:
    with open(path, newline="") as f:
        return {Path(r["image"]).stem: r for r in csv.DictReader(f)}


def test_two_actors_match_local_predict_list_failures_and_skip_done(registered: dict, two_node_ray: str,
                                                                     tmp_path: Path, capsys) -> None:
    names = ["a", "b", "c", "d"]
    images, trimaps = _inputs(tmp_path, names)
    assert main(["predict", "--model", MODEL, "--image", str(images), "--trimap", str(trimaps),
                 "--out", str(tmp_path / "local")]) == 0

    broken = images / "broken.png"  # its header reads, its pixels do not
    broken.write_bytes((images / "a.png").read_bytes()[:150])
    (trimaps / "broken.png").write_bytes((trimaps / "a.png").read_bytes())
    ray_args = ["predict", "--model", MODEL, "--image", str(images), "--trimap", str(trimaps),
                "--out", str(tmp_path / "ray"), "--ray", two_node_ray, "--actors", "2", "--batch-size", "2"]
    capsys.readouterr()
    assert main(ray_args) == 1
    err = capsys.readouterr().err
    assert f"cannot read image {broken}" in err and "1 image(s) failed" in err

    rows = _csv(tmp_path / "ray" / "predictions.csv")
    assert {k: r["status"] for k, r in rows.items()} == {**{n: "written" for n in names}, "broken": "failed"}
    assert str(broken) in rows["broken"]["error"]
    assert not (tmp_path / "ray" / "broken.png").exists()
    for n in names:  # the same files, not only the same pixels
        assert _sha(tmp_path / "ray" / f"{n}.png") == _sha(tmp_path / "local" / f"{n}.png"), n
    local = np.asarray(Image.open(tmp_path / "local" / "c.png"))
    assert local.shape == np.asarray(Image.open(trimaps / "c.png")).shape and 0 < local.mean() < 255

    # re-run: the mattes there are kept as they are, a missing one is predicted again, the broken image fails again
    kept = {n: (tmp_path / "ray" / f"{n}.png").stat().st_mtime_ns for n in ("a", "b", "d")}
    (tmp_path / "ray" / "c.png").unlink()
    assert main(ray_args) == 1
    rows = _csv(tmp_path / "ray" / "predictions.csv")
    assert {k: r["status"] for k, r in rows.items()} == {"a": "skipped", "b": "skipped", "c": "written",
                                                         "d": "skipped", "broken": "failed"}
    assert {n: (tmp_path / "ray" / f"{n}.png").stat().st_mtime_ns for n in kept} == kept
    assert _sha(tmp_path / "ray" / "c.png") == _sha(tmp_path / "local" / "c.png")


def test_cuda_on_a_cluster_without_gpus_fails_at_once(registered: dict, two_node_ray: str, tmp_path: Path,
                                                      capsys) -> None:
    # before, the actors asked Ray for a GPU the cluster did not have and Ray Data waited for them forever
    images, trimaps = _inputs(tmp_path, ["a"])
    for device, says in (("cuda", "the Ray cluster has no GPU"), ("cuda:1", "use --device cuda")):
        capsys.readouterr()
        assert main(["predict", "--model", MODEL, "--image", str(images), "--trimap", str(trimaps), "--out",
                     str(tmp_path / device), "--ray", two_node_ray, "--device", device]) != 0
        assert says in capsys.readouterr().err
        assert not (tmp_path / device / "a.png").exists()


@pytest.mark.parametrize("device, cluster_gpus, actors, expected", [
    ("auto", 0, 3, (0, 3, "cpu")),
    ("cpu", 4, 3, (0, 3, "cpu")),
    ("auto", 2, 3, (1, 2, "cuda")),     # one GPU per actor: the pool is cut to the cluster's GPUs
    ("cuda", 8, 3, (1, 3, "cuda")),
    ("cuda:0", 1, 1, (1, 1, "cuda")),   # each actor sees its one GPU as cuda:0
])
def test_actor_resources(device: str, cluster_gpus: float, actors: int, expected: tuple) -> None:
    from jobs.batch_predict import actor_resources

    assert actor_resources(device, cluster_gpus, actors) == expected
