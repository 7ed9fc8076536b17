"""One exception type for every user-facing failure.

The CLI prints a ``FamcError`` as a single line and exits with its ``exit_code``; anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations


class FamcError(Exception):
    """A problem the user can fix: the message names the file/field at fault and the fix."""

    exit_code: int = 2

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code
