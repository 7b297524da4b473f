"""``pvhpc remote-stage [--cwd DIR] [--env NAME=VALUE]… -- TYPE OPTIONS…``: run one
workflow stage on this host for ``pvhpc run``'s ssh and Slurm launchers.

Not meant to be typed: the launchers start it through ``ssh`` or ``srun``. Its
stdin carries the stop sequence and its end stops the stage; the stage's output
comes back on stdout and stderr. See :mod:`pvhpc.workflow.remote`, whose
:func:`~pvhpc.workflow.remote.run_remote_stage` does the work.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import UsageError
from ..options.common import Parser, add_version
from ..workflow.remote import run_remote_stage
from .common import entry_point, run_main

__all__ = ["main", "build_parser"]

PROG = "pvhpc remote-stage"
STAGE_TYPES = ("sim", "mirror", "consumer", "collector")


def build_parser() -> Parser:
    p = Parser(
        prog=PROG,
        description="Run one workflow stage here for pvhpc run's ssh and slurm launchers: "
        "stdin carries the stop sequence (INT, TERM, KILL; its end stops the stage).",
        allow_abbrev=False,
    )
    add_version(p)
    p.add_argument("--cwd", help="change to this directory first (if it exists)")
    p.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set in the stage's environment",
    )
    p.add_argument("stage", nargs="+", help="-- then the stage: TYPE OPTIONS…")
    return p


def _body(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if args.stage[0] not in STAGE_TYPES:
        raise UsageError(f"stage type {args.stage[0]!r} is not one of {', '.join(STAGE_TYPES)}")
    env = {}
    for item in args.env:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"--env: expected NAME=VALUE, got {item!r}")
        env[name] = value
    return run_remote_stage(args.stage, args.cwd, env)


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(PROG, _body, argv)


if __name__ == "__main__":
    entry_point(main)()
