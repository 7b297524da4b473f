"""Logging configuration for pvhpc commands: named loggers under ``pvhpc.``."""

from __future__ import annotations

import logging

from .errors import UsageError

__all__ = ["configure_logging", "get_logger"]

_HANDLER_TAG = "_pvhpc_handler"
_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def get_logger(name: str) -> logging.Logger:
    """Return the logger ``pvhpc.<name>``."""
    return logging.getLogger(name if name.startswith("pvhpc") else f"pvhpc.{name}")


def configure_logging(level: str | None, log_file: str | None = None) -> None:
    """Install one handler on the ``pvhpc`` logger from ``--log-level``/``--log-file``.

    Without a level only warnings and errors are logged; they still reach
    stderr, so problems are never silent. Safe to call more than once: the previous
    pvhpc handler is replaced, never doubled. A log file that cannot be opened
    raises :class:`UsageError` naming ``--log-file``.
    """
    try:
        handler: logging.Handler = (
            logging.FileHandler(log_file) if log_file else logging.StreamHandler()
        )
    except OSError as exc:
        raise UsageError(f"--log-file: cannot open {log_file!r}: {exc.strerror}") from None
    root = logging.getLogger("pvhpc")
    for old in list(root.handlers):
        if getattr(old, _HANDLER_TAG, False):
            root.removeHandler(old)
            old.close()
    setattr(handler, _HANDLER_TAG, True)
    handler.setFormatter(logging.Formatter(_FORMAT))
    root.addHandler(handler)
    root.setLevel(parse_level(level) if level else logging.WARNING)
    root.propagate = False


def parse_level(level: str) -> int:
    """Turn ``debug``/``INFO``/``20`` into a logging level; ValueError if unknown."""
    if level.isdigit():
        return int(level)
    value = logging.getLevelName(level.upper())
    if not isinstance(value, int):
        raise ValueError(f"unknown log level {level!r} (use debug, info, warning, error)")
    return value
