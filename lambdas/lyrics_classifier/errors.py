"""The package's exceptions, on the ground floor: every module may raise them, and none of
them imports anything of ours (so library code never reaches up into the CLI)."""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix (a bad option, a missing file, ...); the CLI prints it
    without a traceback and exits with status 2."""


class InputError(ValueError):
    """The input file cannot be classified as it is; the message says why and what to do."""


class ModelError(ValueError):
    """The model directory is missing, incomplete or unreadable."""


class IncompleteRunError(RuntimeError):
    """Some range was not classified (or not as Split described it); nothing final is written."""
