"""Shared pytest set-up: GPU tests skip without CUDA; one small synthetic shard set per session."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from typing import Iterator

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

# Ray on a loopback-only test machine (see docs/stack.md, "Ray Train").
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def _cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:  # pragma: no cover - torch is always installed
        return False


# Without a GPU the fused Triton kernels run in Triton's CPU interpreter. The mode is fixed when triton is first
# imported (its language library is built as interpreted or compiled functions then), and torch.compile imports triton
# too, so it is set here, before any test module can import either.
if not _cuda_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip every test marked `gpu` when no CUDA device is present."""
    if _cuda_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic shard set (fg, bg and test shards) written by the real `data_prep synthetic` CLI."""
    out = tmp_path_factory.mktemp("synthetic")
    subprocess.run(
        [sys.executable, "-m", "data_prep", "synthetic", "--out", str(out), "--count", "12", "--size", "320",
         "--seed", "0"],
        cwd=REPO_ROOT, check=True,
    )
    return out


@pytest.fixture(scope="module")
def two_node_ray() -> Iterator[str]:
    """A Ray cluster of two nodes on 127.0.0.1 (ray.cluster_utils.Cluster, one CPU each); yields its address. Code
    under test connects with `ray.init(address)` and disconnects itself. A process forked from the test process
    would inherit the nodes' signal handlers: run local-mode commands that fork in a subprocess."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False,
                                                            "object_store_memory": 96 * 1024 ** 2})
    try:
        cluster.add_node(num_cpus=1, object_store_memory=96 * 1024 ** 2)
        cluster.wait_for_nodes()
        yield cluster.address
    finally:
        cluster.shutdown()
