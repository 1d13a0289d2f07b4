"""A tracking outage during training: metrics stay buffered and are published once MLflow answers again, without
gaps or duplicates; other calls warn instead of killing the worker; ending the run never raises."""
from __future__ import annotations

import logging

import pytest
from mlflow.exceptions import MlflowException

from jobs.tracking import LAST_STEP_TAG, StepLogger


class _FlakyClient:
    """Records published metric steps; raises like an unreachable server while `down` is set."""

    def __init__(self) -> None:
        self.down = False
        self.steps: list[int] = []
        self.tags: dict[str, str] = {}

    def _check(self) -> None:
        if self.down:
            raise MlflowException("API request to http://127.0.0.1:5000 failed: Connection refused")

    def get_run(self, run_id: str):
        self._check()
        data = type("Data", (), {"tags": dict(self.tags)})()
        return type("Run", (), {"data": data})()

    def log_batch(self, run_id: str, metrics=(), tags=()) -> None:
        self._check()
        self.steps.extend(m.step for m in metrics)
        self.tags.update({t.key: t.value for t in tags})

    def set_tag(self, run_id: str, key: str, value: str) -> None:
        self._check()
        self.tags[key] = value


def test_metrics_survive_an_outage_and_are_published_once(caplog: pytest.LogCaptureFixture) -> None:
    client = _FlakyClient()
    logger = StepLogger("http://127.0.0.1:5000", "run", client=client)
    for step in (1, 2):
        logger.add(step, {"train/loss": 1.0 / step})
    logger.flush(2)
    client.down = True
    with caplog.at_level(logging.WARNING, logger="jobs.tracking"):
        for step in (3, 4, 5, 6):
            logger.add(step, {"train/loss": 1.0 / step})
            if step % 2 == 0:
                logger.flush(step)              # fails: kept
        assert logger.call("set_tag", "run", "a2u.worker_nodes", "[]") is False
    assert sum("unreachable" in r.message for r in caplog.records) == 1  # one warning per outage
    assert client.steps == [1, 2] and logger.last_logged == 2
    client.down = False
    logger.add(7, {"train/loss": 0.1})
    logger.flush(6)                             # step 7 is not checkpointed yet
    assert client.steps == [1, 2, 3, 4, 5, 6] and client.tags[LAST_STEP_TAG] == "6"
    logger.flush(7)
    assert client.steps == [1, 2, 3, 4, 5, 6, 7]


def test_a_restart_during_an_outage_uses_the_checkpoints_record() -> None:
    client = _FlakyClient()
    client.down = True
    logger = StepLogger("http://127.0.0.1:5000", "run", fallback_last_logged=4, client=client)
    assert logger.last_logged == 4


def test_ending_the_run_during_an_outage_only_warns(caplog: pytest.LogCaptureFixture) -> None:
    from jobs.trainer import _mark_run

    class _Down:
        def set_terminated(self, run_id: str, status: str) -> None:
            raise MlflowException("Connection refused")

    with caplog.at_level(logging.WARNING):
        _mark_run(_Down(), "run", "FAILED")
    assert "could not mark MLflow run run FAILED" in caplog.text
