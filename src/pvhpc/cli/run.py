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

Every stage's output goes to ``<log-dir>/<stage>.out`` and ``.err``.

``--launcher ssh|slurm`` (or ``launcher:`` in the file) starts the stages on their
hosts (:mod:`pvhpc.workflow.launch`); ``--launcher slurm --emit-batch FILE`` writes
an ``sbatch`` script that runs the workflow (:func:`pvhpc.workflow.slurm.batch_script`).
From Python, use :func:`pvhpc.workflow.load_workflow`,
:func:`pvhpc.workflow.launch.make_launcher` and :class:`pvhpc.workflow.runner.Runner`.
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
from ..options.common import Parser, add_version
from ..workflow import Workflow, load_workflow
from ..workflow.launch import Launcher, make_launcher, quote
from ..workflow.placement import LAUNCHERS
from ..workflow.runner import Runner, RunOptions
from ..workflow.slurm import batch_script
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
        "--launcher",
        choices=LAUNCHERS,
        help="start the stages here (local), on their hosts through ssh, or as srun steps "
        "of the current Slurm allocation [the file's launcher:, else local]",
    )
    p.add_argument(
        "--emit-batch",
        nargs="?",
        const="-",
        metavar="FILE",
        help="with --launcher slurm: write an sbatch script that runs the workflow to FILE "
        "(- or none: standard output), start nothing",
    )
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


def _print_plan(wf: Workflow, launcher: Launcher, console: Console) -> None:
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
    for line in [*wf.notes, *launcher.describe()]:
        console.print(f"  {line}", highlight=False, markup=False, soft_wrap=True)
    console.print("  start order:", highlight=False, markup=False)
    for stage in wf.start_order():
        line = "pvhpc " + " ".join(_quote(a) for a in stage.command)
        console.print(f"    {stage.label}: {line}", highlight=False, markup=False, soft_wrap=True)
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
    wf = load_workflow(args.workflow, args.channel_prefix, launcher=args.launcher)
    if args.emit_batch is not None:
        return _emit_batch(wf, args)
    console = Console(width=None if sys.stdout.isatty() else 160)
    launcher = make_launcher(wf)
    if args.check:
        try:
            launcher.prepare()
        except UsageError as exc:
            if launcher.name != "slurm" or os.environ.get("SLURM_JOB_ID"):
                raise
            wf.notes.append(f"not placed yet: {exc}")
        _print_plan(wf, launcher, console)
        return 0
    launcher.prepare()
    # network: loopback or hosts: this process's own status monitors search where
    # the stages serve (the stages get their settings from the launcher).
    os.environ.update(launcher.runner_env())
    options = RunOptions(
        log_dir=args.log_dir,
        view=args.view,
        print_period=args.print_period,
        duration=args.duration,
        start_timeout=args.start_timeout,
        drain_timeout=args.drain_timeout,
        quiet_time=args.quiet_time,
    )
    runner = Runner(wf, options, console, launcher)
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


def _emit_batch(wf: Workflow, args) -> int:
    """``--emit-batch``: write the sbatch script (see :func:`batch_script`)."""
    if wf.launch.launcher != "slurm":
        raise UsageError(
            "--emit-batch writes a Slurm batch script: give --launcher slurm "
            "(or launcher: slurm in the workflow file)"
        )
    options = ["--view", "plain" if args.view == "auto" else args.view]
    for name in ("channel_prefix", "log_dir"):
        if getattr(args, name):
            options += [f"--{name.replace('_', '-')}", getattr(args, name)]
    for name in ("duration", "print_period", "start_timeout", "drain_timeout", "quiet_time"):
        if getattr(args, name) != build_parser().get_default(name):
            options += [f"--{name.replace('_', '-')}", f"{getattr(args, name):g}"]
    text = batch_script(wf, options)
    if args.emit_batch == "-":
        sys.stdout.write(text)
        return 0
    try:
        with open(args.emit_batch, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as exc:
        raise UsageError(f"--emit-batch: cannot write {args.emit_batch}: {exc.strerror}") from None
    sys.stderr.write(
        f"wrote {args.emit_batch}; submit it with: sbatch {quote([args.emit_batch])}\n"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(PROG, _body, argv)


if __name__ == "__main__":
    entry_point(main)()
