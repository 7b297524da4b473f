"""``pvhpc status``: a live table of running stages, read from their status channels.

Patterns name status channels; ``*`` stands for a consumer/collector id and is tried
for ids 1..``--max-id``. Channels that do not exist are simply not shown; those that
appear later (a stage started after the view) get their row when they do.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Sequence

from rich.console import Console
from rich.live import Live

from ..errors import UsageError
from ..options.common import Parser, add_version
from ..workflow.view import StatusWatcher, expand_pattern, status_table
from .common import entry_point, run_main

__all__ = ["main", "build_parser"]

PROG = "pvhpc status"


def build_parser() -> Parser:
    p = Parser(
        prog=PROG,
        description="Show the status channels of running consumers and collectors as a "
        "table that refreshes in place: counts, loss, rates, queue fill, frame latency.",
        allow_abbrev=False,
    )
    add_version(p)
    p.add_argument(
        "patterns",
        nargs="+",
        metavar="PATTERN",
        help="status channel names; '*' is replaced by ids 1..--max-id, e.g. 'consumer:*:status'",
    )
    p.add_argument("--once", action="store_true", help="print one table and exit")
    p.add_argument(
        "--max-id", type=int, default=16, help="highest id tried for '*' in a pattern [16]"
    )
    p.add_argument("-ifs", "--id-format-spec", help="format of ids in channel names, e.g. 03d")
    p.add_argument(
        "--period", type=float, default=1.0, help="seconds between refreshes of the view [1]"
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=5.0,
        help="--once: seconds to wait for the channels to answer [5]",
    )
    p.add_argument(
        "--duration", type=float, default=0.0, help="live view: exit after this many seconds"
    )
    return p


def _channels(args) -> list[str]:
    if args.max_id < 1:
        raise UsageError(f"--max-id must be >= 1, got {args.max_id}")
    if args.period <= 0:
        raise UsageError(f"--period must be > 0, got {args.period}")
    if args.timeout <= 0:
        raise UsageError(f"--timeout must be > 0, got {args.timeout}")
    if args.id_format_spec:
        try:
            format(1, args.id_format_spec)
        except ValueError:
            raise UsageError(
                f"--id-format-spec: {args.id_format_spec!r} is not an integer format"
            ) from None
    names: list[str] = []
    for pattern in args.patterns:
        if not pattern.strip():
            raise UsageError("empty channel pattern")
        for name in expand_pattern(pattern, args.max_id, args.id_format_spec):
            if name not in names:
                names.append(name)
    return names


def _table(watcher: StatusWatcher, explicit: list[str], started: float):
    rows = [r for r in (watcher.row(n) for n in watcher.channels) if r is not None]
    missing = [n for n in explicit if watcher.latest(n) is None]
    caption = f"{time.strftime('%H:%M:%S')}  {len(rows)} stage(s)"
    if missing:
        caption += "; waiting for " + ", ".join(missing)
    elif not rows:
        caption += f"; no status channel answered yet ({time.monotonic() - started:.0f} s)"
    return status_table(rows, caption=caption)


def _wait_once(watcher: StatusWatcher, explicit: list[str], timeout: float) -> None:
    """Until every explicit name answered (or, with patterns, answers stop arriving)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answered = set(watcher.answered())
        last_new = watcher.last_new_answer()
        if (
            explicit
            and all(n in answered for n in explicit)
            and len(answered) == len(watcher.channels)
        ):
            return
        if last_new is not None and time.monotonic() - last_new > 1.0:
            if all(n in answered for n in explicit):
                return
        time.sleep(0.05)


def _body(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    names = _channels(args)
    explicit = [p for p in args.patterns if "*" not in p]
    watcher = StatusWatcher(names)
    started = time.monotonic()
    try:
        if args.once:
            _wait_once(watcher, explicit, args.timeout)
            if not watcher.answered():
                sys.stderr.write(
                    f"{PROG}: no status channel answered within {args.timeout:g} s: "
                    + " ".join(args.patterns)
                    + (f" (ids 1..{args.max_id})" if len(explicit) < len(args.patterns) else "")
                    + "\n"
                )
                return 1
            Console(width=_width()).print(_table(watcher, explicit, started))
            return 0
        end = started + args.duration if args.duration > 0 else None
        console = Console(width=_width())
        # Ctrl-C is how a live view ends; the last table stays on screen. It sets an
        # event rather than raising KeyboardInterrupt anywhere: raised just after a
        # lock was taken, that leaves the lock held, the next status update waits on
        # it in a pvaccess thread, and stopping the monitors then waits for that.
        interrupted = threading.Event()
        previous = signal.signal(signal.SIGINT, lambda *_: interrupted.set())
        try:
            with Live(
                _table(watcher, explicit, started), console=console, auto_refresh=False
            ) as live:
                while end is None or time.monotonic() < end:
                    left = (end or 1e18) - time.monotonic()
                    if interrupted.wait(min(args.period, max(0.0, left))):
                        break
                    live.update(_table(watcher, explicit, started), refresh=True)
        finally:
            signal.signal(signal.SIGINT, previous)
        return 0
    finally:
        watcher.close()


def _width() -> int | None:
    """Let rich size the table to a terminal; elsewhere use a width that fits it."""
    return None if sys.stdout.isatty() else 160


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(PROG, _body, argv)


if __name__ == "__main__":
    entry_point(main)()
