"""The loaders on png and raw shards of the same synthetic data: bit-identical batches for the same seed, and a
corrupt raw member named like a corrupt PNG one."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import pipeline
from pipeline.dataset import Dataset

REPO_ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same synthetic set (fg, bg, val, test and train-composite shards) in both encodings."""
    root = tmp_path_factory.mktemp("encodings")
    for enc in ("png", "raw"):
        subprocess.run([sys.executable, "-m", "data_prep", "synthetic", "--out", str(root / enc), "--count", "8",
                        "--size", "160", "--seed", "2", "--train-composites", "1", "--encoding", enc],
                       cwd=REPO_ROOT, check=True, capture_output=True)
    return {enc: root / enc for enc in ("png", "raw")}


def _epochs(dataset: Path, epochs: int = 2, **kw) -> list[dict[str, torch.Tensor]]:
    loader = pipeline.build_train_loader(dataset, 4, 64, seed=5, num_threads=2, **kw)
    out = []
    for e in range(epochs):
        loader.set_epoch(e)
        out.extend(dict(b) for b in loader)
    return out


def _assert_identical(a: list[dict[str, torch.Tensor]], b: list[dict[str, torch.Tensor]]) -> None:
    assert len(a) == len(b) and a
    for i, (x, y) in enumerate(zip(a, b)):
        assert x.keys() == y.keys()
        for name in x:
            assert torch.equal(x[name], y[name]), (i, name, float((x[name] - y[name]).abs().max()))


def test_dataset_reports_encoding(pair: dict[str, Path]) -> None:
    assert Dataset(pair["png"]).encoding == "png" and Dataset(pair["raw"]).encoding == "raw"


@pytest.mark.parametrize("options", [{}, {"p_combine": 1.0, "p_resize": 1.0}],
                         ids=["default", "combine+resize"])
def test_train_batches_bit_identical(pair: dict[str, Path], options: dict) -> None:
    _assert_identical(_epochs(pair["png"], **options), _epochs(pair["raw"], **options))


def test_composite_batches_bit_identical(pair: dict[str, Path]) -> None:
    _assert_identical(_epochs(pair["png"], 1, composites=True), _epochs(pair["raw"], 1, composites=True))


@pytest.mark.parametrize("split", ["test", "val"])
def test_eval_samples_bit_identical(pair: dict[str, Path], split: str) -> None:
    a = list(pipeline.build_eval_loader(pair["png"], split=split, num_threads=2))
    b = list(pipeline.build_eval_loader(pair["raw"], split=split, num_threads=2))
    assert len(a) == len(b) and a
    for x, y in zip(a, b):
        assert x["key"] == y["key"] and x["size"] == y["size"]
        for name in ("image", "alpha", "trimap"):
            assert torch.equal(x[name], y[name]), (x["key"], name)


def _garble(dataset: Path, kind: str, member: str, index: int = 0) -> tuple[Path, str]:
    """Overwrite the .npy header of one member in place (the tar stays the same size)."""
    shard, key = Dataset(dataset).samples(kind)[index]
    m = shard.members[key][member]
    with open(shard.path, "r+b") as f:
        f.seek(m.offset + 8)
        f.write(b"\xff" * 48)
    return shard.path, key


@pytest.mark.parametrize("member", ["fg.npy", "alpha.npy"])
def test_corrupt_raw_member_named(pair: dict[str, Path], tmp_path: Path, member: str) -> None:
    ds = Path(shutil.copytree(pair["raw"], tmp_path / "raw"))
    shard, key = _garble(ds, "fg", member, index=2)
    loader = pipeline.build_train_loader(ds, 4, 64, num_threads=1, p_combine=0)
    with pytest.raises(pipeline.DatasetError) as info:
        for _ in loader:
            pass
    msg = str(info.value)
    assert str(shard) in msg and repr(key) in msg and f"corrupt {member} member" in msg


def test_corrupt_raw_member_skipped(pair: dict[str, Path], tmp_path: Path) -> None:
    ds = Path(shutil.copytree(pair["raw"], tmp_path / "raw"))
    _, key = _garble(ds, "fg", "fg.npy", index=1)
    loader = pipeline.build_train_loader(ds, 4, 64, num_threads=1, p_combine=0, skip_corrupt=True)
    seen = set()
    for _ in loader:
        seen.update(loader.last_keys)
    assert loader.skipped == 1 and key not in seen


def test_corrupt_raw_eval_member_named(pair: dict[str, Path], tmp_path: Path) -> None:
    ds = Path(shutil.copytree(pair["raw"], tmp_path / "raw"))
    shard, key = _garble(ds, "test", "trimap.npy", index=1)
    with pytest.raises(pipeline.DatasetError) as info:
        for _ in pipeline.build_eval_loader(ds):
            pass
    assert str(shard) in str(info.value) and repr(key) in str(info.value) and "trimap.npy" in str(info.value)
