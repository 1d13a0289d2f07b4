"""Two Ray nodes on this machine (ray.cluster_utils.Cluster, one CPU each, 127.0.0.1 only): 2-worker DDP with one
worker per node, checkpoints on shared local storage."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from jobs.checkpointing import read_checkpoint
from jobs.config import load_config
from jobs.trainer import run_training
from tests.test_jobs.conftest import DEMO_CONFIG, REPO_ROOT, TINY

pytestmark = pytest.mark.slow


def test_ddp_across_two_nodes(synthetic_dataset: Path, tmp_path: Path) -> None:
    import ray
    from ray.cluster_utils import Cluster

    from jobs.ray_env import LOCAL_RAY_ENV

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False,
                                                            "object_store_memory": 128 * 1024 ** 2})
    try:
        cluster.add_node(num_cpus=1, object_store_memory=128 * 1024 ** 2)
        ray.init(address=cluster.address, runtime_env={"env_vars": {"PYTHONPATH": str(REPO_ROOT), **LOCAL_RAY_ENV}})
        nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
        assert len(nodes) == 2
        assert all(n["NodeManagerAddress"] == "127.0.0.1" for n in ray.nodes())
        out = run_training(load_config(DEMO_CONFIG, [
            *TINY, f"data.dataset_dir={synthetic_dataset}", f"run.storage_path={tmp_path / 'shared'}",
            "run.name=two-nodes", f"tracking.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
            "tracking.log_model=false", "scaling.num_workers=2", "scaling.cpus_per_worker=1"]))
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert out.checkpoint_path is not None and Path(out.checkpoint_path).parent == tmp_path / "shared" / "two-nodes"
    state = read_checkpoint(out.checkpoint_path)
    assert state["world_size"] == 2 and state["step"] == 3
    assert set(state["worker_nodes"]) == nodes  # rank 0 and rank 1 ran on different nodes
    from mlflow.tracking import MlflowClient

    tags = MlflowClient(out.tracking_uri).get_run(out.mlflow_run_id).data.tags
    assert set(json.loads(tags["a2u.worker_nodes"])) == nodes
