"""Pieces every command's parser shares: one-line errors, ``--version``, value types."""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable

from .._version import __version__
from ..log import parse_level

__all__ = [
    "Parser",
    "ParseError",
    "add_version",
    "json_object",
    "seconds",
    "log_level",
    "number",
]


class ParseError(Exception):
    """An option mistake, raised instead of exiting by a parser with ``raise_errors``."""


class Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line on stderr and exit status 2.

    An unknown option is reported before a missing required one: a mistyped
    ``--input-chanel X`` must be named as such, not as a missing ``--input-channel``.
    With ``raise_errors`` set, a mistake raises :class:`ParseError` with argparse's
    message instead (the workflow loader reports it with the file and line).
    """

    raise_errors = False

    def error(self, message: str):  # noqa: D401 - argparse API
        if self.raise_errors:
            raise ParseError(message)
        self.exit(2, f"{self.prog}: error: {message}\n")

    def parse_args(self, args=None, namespace=None):  # noqa: D102 - argparse API
        required = [a for a in self._actions if a.required]
        for action in required:
            action.required = False
        try:
            _, extras = self.parse_known_args(args, argparse.Namespace())
        finally:
            for action in required:
                action.required = True
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return super().parse_args(args, namespace)

    def option_actions(self) -> dict[str, argparse.Action]:
        """Every option string (``-ic``, ``--input-channel``...) and its action."""
        return {opt: a for a in self._actions for opt in a.option_strings}


def add_version(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-v", "--version", action="version", version=f"pvhpc {__version__}")


def json_object(option: str) -> Callable[[str], dict]:
    """An argparse type: a JSON object, or a clear error naming ``option``."""

    def parse(text: str) -> dict:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise argparse.ArgumentTypeError(
                f"{option}: invalid JSON {text!r}: {exc.msg}"
            ) from None
        if not isinstance(value, dict):
            raise argparse.ArgumentTypeError(f"{option}: expected a JSON object, got {text!r}")
        return value

    return parse


def number(kind: type, check: Callable[[float], bool], what: str) -> Callable[[str], float]:
    """An argparse type: ``kind(text)`` that passes ``check``, else "'x' is not <what>"."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not check(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value

    return parse


seconds = number(float, math.isfinite, "a number of seconds")
"""An argparse type: a finite number of seconds (``nan``/``inf`` are mistakes)."""


def log_level(text: str) -> str:
    """An argparse type: a log level name or number (``debug``, ``INFO``, ``20``)."""
    try:
        parse_level(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text
