"""Exceptions that the command-line tools turn into one clear line and exit status 2."""

from __future__ import annotations

__all__ = ["UsageError"]


class UsageError(Exception):
    """A user mistake: bad option value, missing file, unknown class, bad channel map.

    The message names the option and the bad value; the CLI prints it as one line
    on stderr and exits with status 2.
    """
