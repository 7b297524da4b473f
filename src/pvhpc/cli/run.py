"""``pvhpc run WORKFLOW.yaml``: run a whole workflow, watch it, stop it, check it.

1. The workflow file is checked completely (:func:`pvhpc.workflow.load_workflow`);
   a mistake is one line naming the file, line and key, exit status 2, and nothing
   is started. ``--check`` stops here and prints the commands that would run.
2. Stages start readers first, sources last: consumers and collectors are up and
   listening (their status channels answer) before a simulator publishes frame 1.
3. A live table (the ``pvhpc status`` view, one row per consumer/collector, plus
   the simulators' frame counts) refreshes in place while the workflow runs.
4. The workflow stops on Ctrl-C, after ``duration``, or when every simulator has
   finished and the stream has drained (every consumer set has accounted for all
   frames, or the counts stopped changing). Stages stop upstream first, each
   draining what it holds before the next one is stopped.
5. A summary gives every stage's final numbers and checks the loss invariant of
   SPEC §5 for every consumer set: frames published on its input = processed +
   missed + rejected + errors. A set that accounts for *more* frames than were
   published gets a WARNING line with the likely cause (most often a foreign client
   in the same distributor group, which takes frames the set then counts
   as missed) and what to do.

Exit status (see :func:`judge`):

- 0: every frame is accounted for (frames counted as missed, rejected or errors
  are accounted for; the RESULT line says how many);
- 1: frames vanished unaccounted, or a stage failed (to start, or while running);
- 2: a mistake on the command line or in the workflow file; nothing was started;
- 3: every frame is accounted for, but with warnings: some set counted more frames
  than were published, so its missed count, and the check, cannot be trusted.

Every stage's output goes to ``<log-dir>/<stage>.out`` and ``.err``. From Python,
use :func:`pvhpc.workflow.load_workflow` and :class:`pvhpc.workflow.runner.Runner`.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence

from rich.console import Console

from ..dashboard.options import (
    add_web_arguments,
    check_web_arguments,
    log_actions_to_stderr,
    open_dashboard,
)
from ..dashboard.sources import WorkflowSource
from ..errors import UsageError
from ..loopback import LOOPBACK_ENV
from ..options.common import Parser, add_version
from ..workflow import Workflow, load_workflow
from ..workflow.runner import Runner, RunOptions
from .common import entry_point, run_main

__all__ = ["main", "build_parser"]

PROG = "pvhpc run"


def build_parser() -> Parser:
    p = Parser(
        prog=PROG,
        description="Run a workflow file: start its stages in order, show a live view, "
        "stop everything cleanly and check that no frame vanished unaccounted.",
        allow_abbrev=False,
    )
    add_version(p)
    p.add_argument("workflow", help="workflow file (YAML)")
    p.add_argument(
        "--check", action="store_true", help="only check the file and print the commands"
    )
    p.add_argument(
        "--channel-prefix",
        default="",
        help="put this before every channel name of the workflow (run a second copy)",
    )
    p.add_argument("--log-dir", help="directory for the stages' output [a new temporary one]")
    p.add_argument(
        "--view",
        choices=("auto", "live", "plain", "none"),
        default="auto",
        help="live: table refreshed in place; plain: a table every --print-period s; "
        "auto: live on a terminal, else plain [auto]",
    )
    p.add_argument(
        "--print-period", type=float, default=10.0, help="seconds between plain tables [10]"
    )
    p.add_argument(
        "--duration",
        type=float,
        default=0.0,
        help="stop after this many seconds (overrides the file)",
    )
    p.add_argument(
        "--start-timeout",
        type=float,
        default=60.0,
        help="seconds a stage may take to bring up its channels [60]",
    )
    p.add_argument(
        "--drain-timeout",
        type=float,
        default=60.0,
        help="after the sources finished, seconds to wait for the stream to drain [60]",
    )
    p.add_argument(
        "--quiet-time",
        type=float,
        default=3.0,
        help="the stream has drained when no count changed for this many seconds [3]",
    )
    add_web_arguments(p, None)
    return p


def _print_plan(wf: Workflow, console: Console) -> None:
    console.print(f"workflow {wf.name} ({wf.path}): OK", highlight=False, markup=False)
    if wf.description:
        console.print(f"  {wf.description}", highlight=False, markup=False)
    console.print(
        f"  network: {wf.network}"
        + (f", duration {wf.duration:g} s" if wf.duration else "")
        + (f", external: {', '.join(map(str, wf.external))}" if wf.external else ""),
        highlight=False,
        markup=False,
    )
    console.print("  start order:", highlight=False, markup=False)
    for stage in wf.start_order():
        line = "pvhpc " + " ".join(_quote(a) for a in stage.command)
        console.print(f"    {stage.name}: {line}", highlight=False, markup=False, soft_wrap=True)
    console.print("  consumer sets checked for loss:", highlight=False, markup=False)
    for cset in wf.consumer_sets():
        console.print(
            f"    {cset.label} <- {', '.join(cset.channels)}", highlight=False, markup=False
        )


def _quote(arg: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9_@%+=:,./-]+", arg):
        return arg
    return "'" + arg.replace("'", "'\"'\"'") + "'"


def _body(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    for name in ("print_period", "start_timeout", "drain_timeout", "quiet_time"):
        if getattr(args, name) <= 0:
            raise UsageError(f"--{name.replace('_', '-')} must be > 0")
    web = check_web_arguments(args)
    wf = load_workflow(args.workflow, args.channel_prefix)
    console = Console(width=None if sys.stdout.isatty() else 160)
    if args.check:
        _print_plan(wf, console)
        return 0
    if wf.network == "loopback":
        # The file asks for it: every EPICS search, beacon and server on 127.0.0.1,
        # for the stages and for this process's own status monitors.
        os.environ.update(LOOPBACK_ENV)
    options = RunOptions(
        log_dir=args.log_dir,
        view=args.view,
        print_period=args.print_period,
        duration=args.duration,
        start_timeout=args.start_timeout,
        drain_timeout=args.drain_timeout,
        quiet_time=args.quiet_time,
    )
    runner = Runner(wf, options, console)
    if web is None:
        return runner.run()
    dashboard = open_dashboard(WorkflowSource(wf, runner.observer, runner), args, web)
    log_actions_to_stderr()
    for line in dashboard.start_lines():
        console.print(line, highlight=False, markup=False, soft_wrap=True)
    dashboard.follow(runner)
    try:
        return runner.run()
    finally:
        dashboard.stop()


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(PROG, _body, argv)


if __name__ == "__main__":
    entry_point(main)()
