"""One exception type for every user-facing failure, and one formatter for invalid input.

The CLI prints a ``FamcError`` as one line per problem and exits with its ``exit_code``; anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError


class FamcError(Exception):
    """A problem the user can fix: the message names the file/field at fault and the fix."""

    exit_code: int = 2

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class GateFailure(FamcError):
    """The release was written, but some of its gates failed (exit code 3)."""

    exit_code = 3

    def __init__(self, lines: list[str], release: Path) -> None:
        super().__init__("\n".join([*lines, f"release written to {release} (see report.md)"]))
        self.release = release


def format_validation_error(
    source: Path | str, exc: ValidationError, what: str = "invalid", fix: str = ""
) -> str:
    """One line per problem: ``source: what: field `a.b`: message (got value); fix``.

    Every file famc reads is validated by pydantic, so this is the only place that decides how a
    bad field is reported.
    """
    lines = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field: remove it or check its spelling"
        elif err["type"] == "missing":
            msg = "required field is missing: add it"
        got = err.get("input")
        shown = f" (got {got!r})" if err["type"] != "missing" and _scalar(got) else ""
        tail = f"; {fix}" if fix else ""
        lines.append(f"{source}: {what}: field `{field}`: {msg}{shown}{tail}")
    return "\n".join(lines)


def _scalar(value: object) -> bool:
    return isinstance(value, str | int | float | bool) and len(repr(value)) <= 60
