"""Bad datasets: refused with a message saying what to run; corrupt members named (or skipped and counted)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import pipeline
from pipeline.dataset import Dataset

pytestmark = pytest.mark.timeout(120)   # a hang is a failure, not a stuck CI job


@pytest.fixture()
def dataset_copy(synthetic_dataset: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(synthetic_dataset, tmp_path / "ds"))


def _corrupt_member(dataset: Path, kind: str, ext: str, index: int = 0) -> tuple[Path, str]:
    """Overwrite the data of one member (keeping its first 64 bytes, i.e. the header) with garbage."""
    shard_key = Dataset(dataset).samples(kind)[index]
    shard, key = shard_key
    member = next(m for e, m in shard.members[key].items() if e.startswith(ext))
    with open(shard.path, "r+b") as f:
        f.seek(member.offset + 64)
        f.write(bytes(range(7, 7 + 64)) * ((member.size - 64) // 64))
    return shard.path, key


def test_missing_manifest_is_refused(dataset_copy: Path) -> None:
    (dataset_copy / "manifest.json").unlink()
    with pytest.raises(pipeline.DatasetError, match=r"no manifest\.json.*python -m data_prep synthetic"):
        pipeline.build_train_loader(dataset_copy, 2, 32)
    with pytest.raises(pipeline.DatasetError, match="manifest"):
        pipeline.build_eval_loader(dataset_copy)


def test_missing_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(pipeline.DatasetError, match="does not exist"):
        pipeline.build_train_loader(tmp_path / "nope", 2, 32)


def test_no_fg_shards_is_refused(dataset_copy: Path) -> None:
    manifest = json.loads((dataset_copy / "manifest.json").read_text())
    manifest["shards"] = [s for s in manifest["shards"] if s["kind"] != "fg"]
    (dataset_copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(pipeline.DatasetError, match=r"no fg shards.*data_prep synthetic"):
        pipeline.build_train_loader(dataset_copy, 2, 32)


def test_missing_index_names_the_shard(dataset_copy: Path) -> None:
    idx = sorted(dataset_copy.glob("bg-*.idx"))[0]
    idx.unlink()
    with pytest.raises(pipeline.DatasetError, match=rf"{idx.stem}\.tar.*wds2idx"):
        pipeline.build_train_loader(dataset_copy, 2, 32)


def test_corrupt_foreground_names_shard_and_key(dataset_copy: Path) -> None:
    shard, key = _corrupt_member(dataset_copy, "fg", "fg.")
    loader = pipeline.build_train_loader(dataset_copy, 4, 32, num_threads=1)
    with pytest.raises(pipeline.DatasetError) as info:
        for _ in loader:
            pass
    assert str(shard) in str(info.value) and repr(key) in str(info.value) and "corrupt" in str(info.value)


def test_corrupt_alpha_names_shard_and_key(dataset_copy: Path) -> None:
    shard, key = _corrupt_member(dataset_copy, "fg", "alpha.png", index=3)
    loader = pipeline.build_train_loader(dataset_copy, 4, 32, num_threads=1, p_combine=0)
    with pytest.raises(pipeline.DatasetError) as info:
        for _ in loader:
            pass
    assert str(shard) in str(info.value) and repr(key) in str(info.value)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_corrupt_sample_skipped_and_counted(dataset_copy: Path, device: str) -> None:
    # on a GPU the foreground is decoded by the "mixed" decoder: its failure must be caught and skipped the same way
    shard, key = _corrupt_member(dataset_copy, "fg", "fg.", index=5)
    loader = pipeline.build_train_loader(dataset_copy, 4, 32, num_threads=1, skip_corrupt=True, p_combine=0,
                                         device=device)
    seen: set[str] = set()
    for epoch in range(2):
        loader.set_epoch(epoch)
        n = 0
        for batch in loader:
            n += 1
            seen.update(loader.last_keys)
            assert batch["image"].shape == (4, 3, 32, 32)
        assert n == len(loader)
    assert loader.skipped == 1 and key not in seen


def test_corrupt_eval_member_names_shard_and_key(dataset_copy: Path) -> None:
    shard, key = _corrupt_member(dataset_copy, "test", "image.png", index=1)
    with pytest.raises(pipeline.DatasetError) as info:
        for _ in pipeline.build_eval_loader(dataset_copy):
            pass
    assert str(shard) in str(info.value) and repr(key) in str(info.value)
