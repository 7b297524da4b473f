"""``pvhpc dashboard``: the web dashboard of stages that run elsewhere.

Attach by a workflow file (``--workflow FILE``: every stage, the loss check of
each consumer set, the frame channels) or by status-channel patterns (``*`` is
tried for ids 1..``--max-id``, as ``pvhpc status`` does). From Python, use
:class:`pvhpc.dashboard.Dashboard` with a :class:`pvhpc.dashboard.WorkflowSource`
or :class:`pvhpc.dashboard.PatternSource`.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Sequence

from ..dashboard.options import (
    add_web_arguments,
    check_web_arguments,
    log_actions_to_stderr,
    open_dashboard,
)
from ..dashboard.sources import PatternSource, WorkflowSource
from ..endpoints import parse_channel_list
from ..errors import UsageError
from ..loopback import LOOPBACK_ENV
from ..options.common import Parser, add_version
from ..workflow import load_workflow
from ..workflow.view import StatusWatcher
from .common import entry_point, run_main

__all__ = ["main", "build_parser"]

PROG = "pvhpc dashboard"
DEFAULT_LISTEN = "8765"


def build_parser() -> Parser:
    p = Parser(
        prog=PROG,
        description="Serve a web page that shows running stages live (counts, loss check, "
        "charts, a frame thumbnail) and controls them.",
        allow_abbrev=False,
    )
    add_version(p)
    p.add_argument(
        "patterns",
        nargs="*",
        metavar="PATTERN",
        help="status channel names; '*' is replaced by ids 1..--max-id, e.g. 'demo:process:*:status'",
    )
    p.add_argument(
        "--workflow", help="attach to the stages of this workflow file (running elsewhere)"
    )
    p.add_argument("--channel-prefix", default="", help="with --workflow: the prefix it runs with")
    p.add_argument(
        "--frames", help="with patterns: frame channels offered for a thumbnail, comma-separated"
    )
    p.add_argument("--max-id", type=int, default=16, help="highest id tried for '*' [16]")
    p.add_argument("-ifs", "--id-format-spec", help="format of ids in channel names, e.g. 03d")
    p.add_argument("--duration", type=float, default=0.0, help="exit after this many seconds")
    add_web_arguments(p, DEFAULT_LISTEN)
    return p


def _source(args, watcher: StatusWatcher):
    if args.workflow and args.patterns:
        raise UsageError("give either status-channel patterns or --workflow FILE, not both")
    if args.max_id < 1:
        raise UsageError(f"--max-id must be >= 1, got {args.max_id}")
    if args.workflow:
        if args.frames:
            raise UsageError("--frames is for patterns; a workflow file names its channels")
        wf = load_workflow(args.workflow, args.channel_prefix)
        if wf.network == "loopback":
            os.environ.update(LOOPBACK_ENV)  # as pvhpc run does for this file
        return WorkflowSource.attached(wf, watcher)
    if not args.patterns:
        raise UsageError("give status-channel patterns, or --workflow FILE")
    if any(not p.strip() for p in args.patterns):
        raise UsageError("empty channel pattern")
    frames = [e.name for e in parse_channel_list(args.frames, "--frames", "pva")]
    return PatternSource(args.patterns, frames, args.max_id, args.id_format_spec, watcher)


def _body(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    checked = check_web_arguments(args)
    assert checked is not None
    watcher = StatusWatcher()
    try:
        source = _source(args, watcher)
        dashboard = open_dashboard(source, args, checked)
        log_actions_to_stderr()
        for line in dashboard.start_lines():
            sys.stdout.write(line + "\n")
        sys.stdout.flush()
        stop = threading.Event()
        previous = {
            sig: signal.signal(sig, lambda *_: stop.set())
            for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            dashboard.run_until(stop, args.duration)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            dashboard.stop()
        return 0
    finally:
        watcher.close()


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(PROG, _body, argv)


if __name__ == "__main__":
    entry_point(main)()
