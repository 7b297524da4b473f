"""``pvapy-mirror-server`` / ``pvhpc mirror``: serve channels with the latest object of others.

Runs a :class:`pvhpc.mirror.MirrorServer` for the channel map until the runtime is
over or SIGINT/SIGTERM arrives, printing a per-channel report every report period
and a final one at the end, on stdout. Exit status 0 in both cases; 2 for a user
mistake (bad channel map, bad number, unknown option).
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import replace

from ..channel_map import SYNTAX, parse_channel_map
from ..errors import UsageError
from ..log import configure_logging, parse_level
from ..mirror import MirrorServer, format_report
from .common import Parser, add_version, entry_point, run_main

__all__ = ["main", "build_parser"]

PROG = "pvapy-mirror-server"
# How long the main thread may sleep: bounds the delay before a signal is seen when
# it was delivered to one of pvaccess's threads.
_MAX_SLEEP = 0.2


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds")
    return value


def _log_level(text: str) -> str:
    try:
        parse_level(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def build_parser(prog: str = PROG) -> Parser:
    """The command's option parser (short and long names as in SPEC §3.3)."""
    p = Parser(
        prog=prog,
        description="Serve each dst channel with the latest object of its src channel "
        "(PVA or CA). The dst channels support server queues and the distributor plugin.",
    )
    add_version(p)
    p.add_argument(
        "-cm",
        "--channel-map",
        required=True,
        help=f"{SYNTAX},(...): pva or ca source [pva], server queue asked of the source "
        "[0 = none], and optionally N source monitors with this request, e.g. "
        "(img,ad:image,pva,1000,2,_[pydistributor=updates:1])",
    )
    p.add_argument(
        "-rt",
        "--runtime",
        type=_seconds,
        default=0.0,
        help="seconds to run, <= 0 until stopped [0]",
    )
    p.add_argument(
        "-rp",
        "--report-period",
        type=_seconds,
        default=0.0,
        help="seconds between per-channel reports, <= 0 only the final one [0]",
    )
    p.add_argument(
        "-ll", "--log-level", type=_log_level, default=None, help="log level [warnings only]"
    )
    p.add_argument("-lf", "--log-file", default=None, help="log to this file instead of stderr")
    p.add_argument(
        "-dc",
        "--disable-curses",
        action="store_true",
        help="accepted for compatibility (the output is plain lines)",
    )
    return p


def _print(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _body(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    mappings = parse_channel_map(args.channel_map, "--channel-map")
    try:
        configure_logging(args.log_level, args.log_file)
    except OSError as exc:
        raise UsageError(f"--log-file: cannot open {args.log_file!r}: {exc.strerror}") from None

    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    previous_handlers = {
        sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    mirror = MirrorServer(mappings)
    started = time.monotonic()
    try:
        mirror.start()
        for m in mappings:
            _print(f"{PROG}: mirroring {m.describe()}")
        runtime = args.runtime if args.runtime > 0 else None
        period = args.report_period if args.report_period > 0 else None
        next_report = started + period if period else math.inf
        deadline = started + runtime if runtime else math.inf
        last_counts, last_time = None, started
        while not stop.is_set():
            now = time.monotonic()
            if now >= deadline:
                break
            if now >= next_report:
                counts = mirror.counts()
                _print(
                    format_report(
                        counts,
                        last_counts,
                        now - last_time,
                        f"{PROG}: report after {now - started:.1f} s",
                    )
                )
                last_counts, last_time = counts, now
                # Skip reports that a stalled main thread missed rather than bursting.
                while next_report <= now:
                    next_report += period  # type: ignore[operator]
            stop.wait(max(0.0, min(_MAX_SLEEP, deadline - now, next_report - now)))
    finally:
        at_stop = mirror.counts()
        mirror.stop()
        elapsed = time.monotonic() - started
        _print(
            format_report(
                [replace(c, connected=s.connected) for c, s in zip(mirror.counts(), at_stop)],
                None,
                elapsed,
                f"{PROG}: final report after {elapsed:.1f} s (rates averaged over the run)",
            )
        )
        for sig, handler in previous_handlers.items():
            signal.signal(sig, handler)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``pvapy-mirror-server``; returns the exit status.

    Option errors, ``-h`` and ``-v`` return their status too (2, 0, 0) instead of
    raising SystemExit, so that the function can be called from Python.
    """
    try:
        return run_main(PROG, _body, argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1


# The console script (pyproject.toml) and ``python -m``.
entry = entry_point(main)

if __name__ == "__main__":
    entry()
