"""``pvhpc record``: record a frame channel and its metadata channels into HDF5 files.

From Python, run :func:`pvhpc.record.session.run_recording`, or use the recording
processor :class:`pvhpc.processors.StreamRecorder` in any consumer or collector.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..log import configure_logging
from ..options.record import PROG, build_parser, record_config
from ..record.session import run_recording
from .common import entry_point, run_main_status

__all__ = ["main"]


def _body(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    config, processor_args = record_config(args)
    configure_logging(args.log_level, args.log_file)
    return run_recording(config, processor_args, args.report_format)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``pvhpc record``; returns the exit status.

    Option errors, ``-h`` and ``-v`` return their status too (2, 0, 0) instead of
    raising SystemExit, so that the function can be called from Python.
    """
    return run_main_status(PROG, _body, argv)


# ``python -m pvhpc.cli.record``.
entry = entry_point(main)

if __name__ == "__main__":
    entry()
