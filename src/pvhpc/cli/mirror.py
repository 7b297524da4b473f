"""``pvapy-mirror-server`` / ``pvhpc mirror``: serve channels with the latest object of others.

Runs a :class:`pvhpc.mirror.MirrorServer` for the channel map until the runtime is
over or SIGINT/SIGTERM arrives, printing a per-channel report every report period
and a final one at the end, on stdout. Exit status 0 in both cases; 2 for a user
mistake (bad channel map, bad number, unknown option). From Python, use
:func:`pvhpc.mirror.run_mirror` or :class:`pvhpc.mirror.MirrorServer` directly.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections.abc import Sequence

from ..channel_map import parse_channel_map
from ..log import configure_logging
from ..mirror import MirrorServer, run_mirror
from ..mirror_report import format_report, report_json
from ..options.mirror import PROG, build_parser
from .common import entry_point, run_main_status

__all__ = ["main"]


def _print(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _body(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    mappings = parse_channel_map(args.channel_map, "--channel-map")
    configure_logging(args.log_level, args.log_file)
    as_json = args.report_format == "json"
    started = time.monotonic()

    def report(counts, previous, elapsed, final):
        if as_json:
            _print(report_json(counts, previous, elapsed, final))
        elif final:
            title = f"{PROG}: final report after {elapsed:.1f} s (rates averaged over the run)"
            _print(format_report(counts, None, elapsed, title))
        else:
            title = f"{PROG}: report after {time.monotonic() - started:.1f} s"
            _print(format_report(counts, previous, elapsed, title))

    stop = threading.Event()
    previous_handlers = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    mirror = MirrorServer(mappings)
    try:
        mirror.start()
        for m in mappings:
            if as_json:
                _print(
                    json.dumps({"kind": "mirror", "event": "mirroring", "dst": m.dst, "src": m.src})
                )
            else:
                _print(f"{PROG}: mirroring {m.describe()}")
        run_mirror(mirror, args.runtime, args.report_period, stop, report)
    finally:
        for sig, handler in previous_handlers.items():
            signal.signal(sig, handler)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``pvapy-mirror-server``; returns the exit status.

    Option errors, ``-h`` and ``-v`` return their status too (2, 0, 0) instead of
    raising SystemExit, so that the function can be called from Python.
    """
    return run_main_status(PROG, _body, argv)


# The console script (pyproject.toml) and ``python -m``.
entry = entry_point(main)

if __name__ == "__main__":
    entry()
