"""A per-process choice among named options, defaulting to an environment variable: how the model's switches (the
reassembly backend, the CPU inference path) are set, overridden for a block and read, in one way."""
from __future__ import annotations

import contextlib
import os
from typing import Iterator


class ProcessChoice:
    """One of `options`: the value set in this process (`set` / `override`), else `$env`, else `default`.

    Read through `current()`, which torch.compile traces and guards on like any attribute of a module-level object.
    """

    def __init__(self, what: str, env: str, options: tuple[str, ...], default: str) -> None:
        if default not in options:
            raise ValueError(f"{what}: default {default!r} is not one of {options}")
        self.what, self.env, self.options, self.default = what, env, options, default
        self.chosen: str | None = None

    def validated(self, name: str, source: str) -> str:
        """`name` normalised (case, blanks; empty means the default), or a ValueError naming `source`."""
        choice = name.strip().lower() or self.default
        if choice not in self.options:
            raise ValueError(f"{source}={name!r}: expected one of {self.options}")
        return choice

    def set(self, name: str | None) -> None:
        """Choose for this process; None returns to `$env` (else the default)."""
        self.chosen = None if name is None else self.validated(name, self.what)

    @contextlib.contextmanager
    def override(self, name: str | None) -> Iterator[None]:
        """`set` for the duration of a `with` block, then back to what was chosen before."""
        previous = self.chosen
        self.set(name)
        try:
            yield
        finally:
            self.chosen = previous

    def current(self) -> str:
        """The explicit choice, else `$env`, else the default."""
        if self.chosen is not None:
            return self.chosen
        return self.validated(os.environ.get(self.env, self.default), self.env)
