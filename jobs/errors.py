"""One exception type for every user-facing failure of the jobs CLI, so `cli.main` can print it without a traceback."""
from __future__ import annotations


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message (at most `limit` characters), or its type name when it has none: what
    a one-line error or warning quotes of a library's multi-line message."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__


class JobError(RuntimeError):
    """A problem the user can fix (bad config, missing data, unreachable server, unknown model): the message says how."""


class NonFiniteLossError(JobError):
    """Training produced a NaN/inf loss; the run was stopped and the last good checkpoint kept."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) or SIGTERM (`ray job stop`) during training: the run was aborted; the message says how to
    resume it."""
