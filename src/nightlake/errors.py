"""The exceptions nightlake raises; the CLI turns each into one error line.

Library code raises these and never prints or exits. Every message says what was expected,
what was found and, where it helps, how to fix it.
"""

from __future__ import annotations

from os import PathLike


def one_line(message: object) -> str:
    """A message (or exception) folded onto one line: DuckDB's span several lines."""
    return " ".join(part.strip() for part in str(message).splitlines() if part.strip())


def first_line(message: object) -> str:
    """A message's (or exception's) first line: DuckDB's quotes the statement after it."""
    lines = str(message).strip().splitlines()
    return lines[0] if lines else ""


class NightlakeError(Exception):
    """Base of every error nightlake reports to a user (exit code ``exit_code``)."""

    exit_code = 1

    def __reduce__(self):
        # Rebuilt from its state, not its constructor (subclasses take more than the message):
        # an error found on a Dask worker arrives whole.
        return _restore, (type(self), self.args, self.__dict__)


def _restore(cls: type[NightlakeError], args: tuple, state: dict) -> NightlakeError:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class InputError(NightlakeError):
    """A bad input file: the message names the file, and the line/column when known."""

    def __init__(
        self,
        path: str | PathLike[str] | None,
        cause: str,
        *,
        line: int | None = None,
        column: str | None = None,
    ) -> None:
        self.path = None if path is None else str(path)
        self.cause = cause
        self.line = line
        self.column = column
        where = self.path or "<input>"
        if line is not None:
            where += f":{line}"
        if column is not None:
            cause = f"column {column!r}: {cause}"
        super().__init__(f"{where}: {cause}")


class FormatError(InputError):
    """A file that does not follow its format (ECSV, DetReg, FITS header, …)."""


class LockTimeout(NightlakeError):
    """Another process holds the lock longer than the timeout allows."""


class LakeError(NightlakeError):
    """The lake directory is missing, unwritable or inconsistent."""


class QueryError(NightlakeError):
    """DuckDB rejected a query (syntax, binder or runtime error)."""

    exit_code = 2


class ReadOnlyError(QueryError):
    """A statement refused because it could write (files, settings, extensions): reads only."""


class UsageError(NightlakeError):
    """A combination of options that cannot work (the CLI shows it like a usage error)."""

    exit_code = 2
