"""``pvapy-ad-sim-server`` / ``pvhpc sim``: serve simulated area-detector frames.

Runs :class:`pvhpc.simulator.Simulator` until the runtime (plus the shutdown delay)
is over, or until SIGINT/SIGTERM, and prints progress and the final report on
stdout. Exit status 0 in both cases; 2 for a user mistake. From Python, use
:class:`pvhpc.Simulator` with a :class:`pvhpc.SimulatorConfig`.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Sequence

from ..log import configure_logging
from ..options.sim import PROG, build_parser, config_from_args
from ..simulator import Simulator
from .common import entry_point, run_main_status

__all__ = ["main"]


def _print(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _body(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level, args.log_file)
    simulator = Simulator(config_from_args(args), report=_print)

    def on_signal(signum, frame):
        simulator.stop()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        simulator.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``pvapy-ad-sim-server``; returns the exit status.

    Option errors, ``-h`` and ``-v`` return their status too (2, 0, 0) instead of
    raising SystemExit, so that the function can be called from Python.
    """
    return run_main_status(PROG, _body, argv)


# The console script (pyproject.toml) and ``python -m``.
entry = entry_point(main)

if __name__ == "__main__":
    entry()
