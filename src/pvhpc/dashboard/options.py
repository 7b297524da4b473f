"""The dashboard's command-line options, shared by ``pvhpc run --web`` and
``pvhpc dashboard``, and the dashboard they make."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from ..errors import UsageError
from .access import Access, parse_listen

__all__ = [
    "add_web_arguments",
    "check_web_arguments",
    "log_actions_to_stderr",
    "open_dashboard",
]


def add_web_arguments(p: argparse.ArgumentParser, default_listen: str | None) -> None:
    """``--web [HOST:]PORT``, ``--token-file``, ``--read-only``, ``--thumbnail-period``.
    ``default_listen`` None: no dashboard unless ``--web`` is given."""
    p.add_argument(
        "--web",
        metavar="[HOST:]PORT",
        default=default_listen,
        help="serve the web dashboard there; HOST defaults to 127.0.0.1 (this host "
        "only), port 0 picks a free one"
        + (f" [{default_listen}]" if default_listen else " [no dashboard]"),
    )
    p.add_argument(
        "--token-file",
        help="dashboard: control actions need the token in this file's first line "
        "[a new token, printed at start]",
    )
    p.add_argument("--read-only", action="store_true", help="dashboard: no control actions at all")
    p.add_argument(
        "--thumbnail-period",
        type=float,
        default=1.0,
        help="dashboard: seconds between two thumbnails of a frame channel, >= 0.5 [1]",
    )


def check_web_arguments(args: argparse.Namespace) -> tuple[str, int, Access] | None:
    """The address and access policy the options ask for, checked; None without --web."""
    if args.web is None:
        if args.token_file or args.read_only:
            raise UsageError("--token-file and --read-only need --web [HOST:]PORT")
        return None
    host, port = parse_listen(args.web)
    if args.thumbnail_period < 0.5:
        raise UsageError(f"--thumbnail-period must be >= 0.5, got {args.thumbnail_period:g}")
    if args.token_file and args.read_only:
        raise UsageError("--token-file and --read-only exclude each other")
    return host, port, Access.make(args.token_file, args.read_only)


def open_dashboard(source: Any, args: argparse.Namespace, checked: tuple) -> Any:
    """Make the dashboard for ``source`` and start listening; returns it. UsageError
    if the ``web`` extra is missing or the address cannot be listened on."""
    host, port, access = checked
    try:
        import PIL  # noqa: F401 - the thumbnails' PNG encoder

        from .live import Dashboard
    except ImportError as exc:
        raise UsageError(
            f"--web needs the web extra: pip install 'pvhpc[web]' ({exc.name} is missing)"
        ) from None
    dashboard = Dashboard(source, access, host, port, args.thumbnail_period)
    try:
        dashboard.start()
    except OSError as exc:
        raise UsageError(f"--web {args.web}: cannot listen there: {exc.strerror or exc}") from None
    return dashboard


def log_actions_to_stderr() -> None:
    """Control actions and refusals, one line each on stderr (``pvhpc.dashboard``)."""
    log = logging.getLogger("pvhpc.dashboard")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s dashboard: %(message)s", "%H:%M:%S"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
