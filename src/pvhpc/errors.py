"""Exceptions that the command-line tools turn into one clear line and exit status 2."""

from __future__ import annotations

__all__ = ["UsageError", "ProcessorError"]


class UsageError(Exception):
    """A user mistake: bad option value, missing file, unknown class, bad channel map.

    The message names the option and the bad value; the CLI prints it as one line
    on stderr and exits with status 2.
    """


class ProcessorError(Exception):
    """The user's processor failed where the stage cannot go on (in ``start()``).

    The message is complete (it names the method and the processor's exception):
    the runtime prints it as it is, on one line, and exits non-zero.
    """
