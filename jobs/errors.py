"""One exception type for every user-facing failure of the jobs CLI, so `cli.main` can print it without a traceback."""
from __future__ import annotations


class JobError(RuntimeError):
    """A problem the user can fix (bad config, missing data, unreachable server, unknown model): the message says how."""


class NonFiniteLossError(JobError):
    """Training produced a NaN/inf loss; the run was stopped and the last good checkpoint kept."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) during training: Ray aborted the run; the message says how to resume it."""
