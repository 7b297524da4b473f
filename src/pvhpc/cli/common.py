"""What every command-line tool shares: user mistakes as one line and exit status 2,
Ctrl-C as status 130, and an exit that bypasses interpreter shutdown."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence

from ..errors import UsageError
from ..runtime.launcher import exit_process

__all__ = ["run_main", "run_main_status", "entry_point"]


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


def run_main_status(
    prog: str, body: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None
) -> int:
    """:func:`run_main`, with option errors, ``-h`` and ``-v`` returning their status
    too (2, 0, 0) instead of raising SystemExit: a command's ``main`` that can be
    called from Python."""
    try:
        return run_main(prog, body, argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1


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
