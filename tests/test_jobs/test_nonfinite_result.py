"""The driver learns of a NaN/inf stop from rank 0's return value first, so an unwritten MLflow tag cannot let the
run's model be registered as a good one."""
from __future__ import annotations

from types import SimpleNamespace

from jobs.train_loop import NONFINITE_KEY
from jobs.trainer import _nonfinite_tag


class _ClientWithoutTag:
    """A reachable tracking server on which the workers' tag never arrived (a blip while rank 0 wrote it)."""

    def get_run(self, run_id: str):
        return SimpleNamespace(data=SimpleNamespace(tags={}))


def test_the_stop_is_seen_without_its_mlflow_tag() -> None:
    # Ray's Result.metrics are the last checkpoint's, and a NaN stop reports no checkpoint: they do not show it
    result = SimpleNamespace(return_value={NONFINITE_KEY: 4000}, metrics={"step": 3000})
    assert _nonfinite_tag(_ClientWithoutTag(), "run", result) == "4000"


def test_a_normal_end_is_not_a_stop() -> None:
    result = SimpleNamespace(return_value=None, metrics={"step": 3000})
    assert _nonfinite_tag(_ClientWithoutTag(), "run", result) is None
