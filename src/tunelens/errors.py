"""Errors raised at the public boundary. Imports nothing else from tunelens."""

from __future__ import annotations

__all__ = ["InputError", "StoreLockedError"]


class InputError(ValueError):
    """Bad input from a user: names the field and says how to fix it.

    The CLI turns it into exit code 2 and one line on stderr.

    Args:
        field: the argument, column, row or key at fault.
        problem: what is wrong with it.
        fix: what the user should do instead.
    """

    def __init__(self, field: str, problem: str, fix: str = "") -> None:
        self.field = field
        self.problem = problem
        self.fix = fix
        message = f"{field}: {problem}"
        if fix:
            message += f"; {fix}"
        super().__init__(message)


class StoreLockedError(InputError):
    """The store file is held by another writing process."""
