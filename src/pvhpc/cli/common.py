"""Pieces every command shares: an argument parser whose errors are one line, and
the wrapper that turns user mistakes into exit status 2 without a traceback."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence

from .._version import __version__
from ..errors import UsageError
from ..launcher import exit_process

__all__ = ["Parser", "run_main", "entry_point", "json_object", "positive_int", "add_version"]


class Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line on stderr and exit status 2.

    An unknown option is reported before a missing required one: a mistyped
    ``--input-chanel X`` must be named as such, not as a missing ``--input-channel``.
    """

    def error(self, message: str):  # noqa: D401 - argparse API
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


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def run_main(
    prog: str, body: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None
) -> int:
    """Run a command's body: UsageError → one line, status 2; Ctrl-C → status 130.

    With ``--log-level debug`` the traceback of a usage error is logged too.
    """
    try:
        return body(argv)
    except UsageError as exc:
        logging.getLogger("pvhpc").debug("usage error", exc_info=True)
        sys.stderr.write(f"{prog}: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        return 130


def entry_point(main: Callable[[], int]) -> Callable[[], None]:
    """The console-script (and ``python -m``) entry for ``main``: run it, then end
    the process with :func:`~pvhpc.launcher.exit_process` rather than through
    interpreter shutdown, which pvaccess's threads can abort."""

    def entry() -> None:
        try:
            status = main()
        except SystemExit as exc:  # argparse's -h/--version and errors
            if isinstance(exc.code, str):
                sys.stderr.write(exc.code + "\n")
                status = 1
            else:
                status = exc.code or 0
        except KeyboardInterrupt:  # Ctrl-C before a command's own handling
            status = 130
        exit_process(status)

    return entry
