"""Errors a user can act on, each with a BIDS Apps exit code.

The command line turns a :class:`BidsHrfError` into one line on stderr, naming the file or
argument and the fix, and exits with :attr:`BidsHrfError.exit_code`. Numerical core modules
raise :class:`DataError` (or ``ValueError``) with enough context for the caller to name the
file.
"""

from __future__ import annotations

# Exit codes of the BIDS Apps execution specification (sysexits.h).
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 64
EXIT_DATAERR = 65
EXIT_NOINPUT = 66
EXIT_CANTCREAT = 73


class BidsHrfError(Exception):
    """An error explained to the user in one line.

    Parameters
    ----------
    message : str
        What is wrong, naming the file or argument.
    fix : str, optional
        What the user should do about it.
    path : str, optional
        The file or directory concerned (included in the message when not already there).
    """

    exit_code = EXIT_FAILURE

    def __init__(self, message: str, fix: str | None = None, path: str | None = None):
        self.message = message
        self.fix = fix
        self.path = str(path) if path is not None else None
        super().__init__(self.one_line())

    def one_line(self) -> str:
        """Return the message, the path and the fix as one line."""
        text = self.message
        if self.path and self.path not in text:
            text = f"{text} ({self.path})"
        if self.fix:
            text = f"{text} -- {self.fix}"
        return " ".join(text.split())


class UsageError(BidsHrfError):
    """Bad command-line arguments or configuration (exit 64)."""

    exit_code = EXIT_USAGE


class DataError(BidsHrfError):
    """Input data that cannot be analysed as it is (exit 65)."""

    exit_code = EXIT_DATAERR


class NoInputError(BidsHrfError):
    """Input that should be there and is not (exit 66)."""

    exit_code = EXIT_NOINPUT


class OutputError(BidsHrfError):
    """The output directory cannot be created or written (exit 73)."""

    exit_code = EXIT_CANTCREAT


class ValidationErrors(BidsHrfError):
    """Several problems found at once; each is reported on its own line.

    The exit code is the one of the first problem.
    """

    def __init__(self, errors: list[BidsHrfError]):
        self.errors = list(errors)
        self.exit_code = self.errors[0].exit_code if self.errors else EXIT_FAILURE
        super().__init__("\n".join(e.one_line() for e in self.errors))

    def one_line(self) -> str:  # noqa: D102 - several lines, one per problem
        return "\n".join(e.one_line() for e in getattr(self, "errors", []))
