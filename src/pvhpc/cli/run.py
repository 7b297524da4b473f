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
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.live import Live

from ..statusview import StageRow, StatusWatcher, row_from_status, status_table
from ..workflow import LOOPBACK_ENV, ConsumerSet, Endpoint, Stage, Workflow, load_workflow
from .common import Parser, add_version, entry_point, run_main

__all__ = ["main", "build_parser"]

PROG = "pvhpc run"

_SENT = re.compile(r": (done, )?sent (\d+) frames in ([\d.]+) s, ([\d.]+) fps")


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
    return p


# -- stage processes --------------------------------------------------------------------


class StageProcess:
    """One stage's command (``python -m pvhpc <type> …``) with its output in files."""

    def __init__(self, stage: Stage, log_dir: str, env: dict):
        self.stage = stage
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", stage.name)
        self.out_path = os.path.join(log_dir, f"{safe}.out")
        self.err_path = os.path.join(log_dir, f"{safe}.err")
        self.env = dict(env, **stage.env, PYTHONUNBUFFERED="1")
        self.popen: subprocess.Popen | None = None
        self.stopped_by_us = False
        self._out_pos = 0
        self._out_tail = ""
        self.sent: int | None = None
        self.rate: float | None = None
        self.source_done = False
        self.serving = False
        self.mirror_counts: dict[str, dict] = {}

    def start(self) -> None:
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "pvhpc", *self.stage.command],
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                env=self.env,
                start_new_session=True,  # Ctrl-C reaches pvhpc run only; it stops stages in order
            )

    @property
    def returncode(self) -> int | None:
        return None if self.popen is None else self.popen.poll()

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.running:
            try:
                self.popen.send_signal(sig)  # type: ignore[union-attr]
            except ProcessLookupError:
                pass

    def stop(self, grace: float) -> int | None:
        """SIGINT, then SIGTERM, then SIGKILL of the whole process group."""
        if self.popen is None:
            return None
        self.stopped_by_us = True
        for sig, wait in ((signal.SIGINT, grace), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            if self.popen.poll() is not None:
                break
            try:
                if sig == signal.SIGKILL:
                    os.killpg(self.popen.pid, sig)
                else:
                    self.popen.send_signal(sig)
            except ProcessLookupError:
                break
            try:
                self.popen.wait(wait)
            except subprocess.TimeoutExpired:
                continue
        return self.popen.poll()

    def read_output(self) -> None:
        """Follow the stdout file: simulator frame counts, mirror channel counts."""
        try:
            with open(self.out_path, errors="replace") as f:
                f.seek(self._out_pos)
                chunk = f.read()
                self._out_pos = f.tell()
        except OSError:
            return
        if not chunk:
            return
        text = self._out_tail + chunk
        lines = text.split("\n")
        self._out_tail = lines.pop()
        for line in lines:
            if ": serving " in line or ": mirroring " in line:
                self.serving = True
            if self.stage.type == "mirror":
                self._mirror_line(line)
            m = _SENT.search(line)
            if m:
                self.sent = int(m.group(2))
                self.rate = float(m.group(4))
                if m.group(1):
                    self.source_done = True

    def _mirror_line(self, line: str) -> None:
        # The report's header names the columns after the state (which may be more
        # than one word): received, rate/s, published, rate/s, ... A rate column
        # belongs to the count before it. Rows are read against the latest header.
        words = line.split()
        if words[:1] == ["channel"] and "state" in words and "received" in words:
            cols: list[str] = []
            for name in words[words.index("state") + 1 :]:
                cols.append(f"{cols[-1]}_rate" if name == "rate/s" and cols else name)
            self._mirror_cols = cols
            return
        cols = getattr(self, "_mirror_cols", None)
        if not cols or len(words) < len(cols) + 3 or words[0] not in self.stage.mirrors:
            return
        try:
            nums = dict(zip(cols, (float(w) for w in words[-len(cols) :])))
        except ValueError:
            return
        self.mirror_counts[words[0]] = {
            "received": int(nums.get("received", 0)),
            "published": int(nums.get("published", 0)),
            "rate": nums.get("published_rate", 0.0),
            "overruns": int(nums.get("overruns", 0)),
            "errors": int(nums.get("errors", 0)),
            "state": " ".join(words[2 : -len(cols)]),
        }

    def final_reports(self) -> dict[int, dict]:
        """The final JSON report of each consumer/collector id (from stdout)."""
        id_name = f"{self.stage.type}Id"
        finals: dict[int, dict] = {}
        latest: dict[int, dict] = {}
        try:
            with open(self.out_path, errors="replace") as f:
                for line in f:
                    line = line.strip()
                    if not (line.startswith("{") and line.endswith("}")):
                        continue
                    try:
                        report = json.loads(line)
                    except ValueError:
                        continue
                    sid = report.get(id_name)
                    if sid is None:
                        continue
                    latest[sid] = report
                    if report.get("final"):
                        finals[sid] = report
        except OSError:
            pass
        return {**latest, **finals}

    def error_tail(self, n: int = 12) -> str:
        try:
            with open(self.err_path, errors="replace") as f:
                lines = f.read().splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])


# -- running ----------------------------------------------------------------------------


@dataclass
class SetCheck:
    """The loss invariant of one consumer set, from final (or latest) numbers."""

    cset: ConsumerSet
    published: int | None
    processed: int = 0
    missed: int = 0
    rejected: int = 0
    errors: int = 0
    skipped: int = 0
    overruns: int = 0
    missing_reports: list[str] = field(default_factory=list)
    #: Members that reported numbers (0: the set never ran, nothing to check).
    reported: int = 0
    #: Labels of the sets whose stages publish this set's input channels.
    fed_by: list[str] = field(default_factory=list)
    #: Frames that members of a named distributor set lost against their set-mates.
    shortfall: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def accounted(self) -> int:
        return self.processed + self.missed + self.rejected + self.errors + self.skipped

    @property
    def unaccounted(self) -> int:
        if self.published is None:
            return 0
        return max(0, self.published - self.accounted) + self.shortfall

    @property
    def extra(self) -> int:
        """Frames accounted for beyond those published: the counts cannot be trusted."""
        return 0 if self.published is None else max(0, self.accounted - self.published)

    @property
    def balanced(self) -> bool:
        """Every frame published arrived and was counted, exactly. A set that counts
        more than were published proves nothing (its missed count is wrong): frames
        may still be on their way to it."""
        return (
            self.published is not None and self.accounted == self.published and not self.shortfall
        )


#: Exit statuses of ``pvhpc run`` (2 is a usage or workflow-file mistake).
EXIT_OK = 0
EXIT_LOST = 1
EXIT_WARNINGS = 3


def judge(checks: list[SetCheck], failed: list[str], early: bool) -> tuple[list[str], int]:
    """The loss-check lines of the summary and the exit status, from the sets' checks.

    ``failed`` names the stages that ended with an error, ``early`` says the
    workflow stopped while a source was still publishing. Status
    :data:`EXIT_LOST` if frames vanished unaccounted or a stage failed;
    :data:`EXIT_WARNINGS` if every frame is accounted for but a set counted
    more frames than were published (its missed count is then wrong, so the
    check proves nothing for it); else :data:`EXIT_OK`. Pure: no I/O.
    """
    lines = ["loss check, per consumer set: published = processed + missed + rejected + errors"]
    warnings: list[str] = []
    over = {c.cset.label for c in checks if c.extra and c.reported}
    total_unaccounted = 0
    total_lost = 0
    for check in checks:
        cset = check.cset
        where = ", ".join(cset.channels)
        parts = (
            f"{check.processed} processed + {check.missed} missed + "
            f"{check.rejected} rejected + {check.errors} errors"
        )
        if check.skipped:
            parts += f" + {check.skipped} skipped"
        if check.missing_reports and not check.reported:
            lines.append(
                f"  -     {cset.label} <- {where}: no numbers from "
                f"{', '.join(check.missing_reports)} (it did not run), not checked"
            )
            continue
        if check.published is None:
            lines.append(
                f"  -     {cset.label} <- {where}: {check.accounted} accounted "
                f"({parts}); frames published there unknown, not checked"
            )
            continue
        loss = check.missed + check.rejected + check.errors
        if check.unaccounted:
            mark = "LOST "
            total_unaccounted += check.unaccounted
            tail = f"  -> {check.unaccounted} frame(s) UNACCOUNTED FOR"
        elif check.extra:
            mark = "extra"
            tail = f"  -> {check.extra} more than published"
            warnings.append(_over_accounting_warning(check, over))
        else:
            mark = "ok   " if not loss else "loss "
            tail = f"  ({loss} lost, all counted)" if loss else ""
            total_lost += loss
        lines.append(
            f"  {mark} {cset.label} <- {where}: {check.published} published = {parts}{tail}"
        )
        if check.missing_reports:
            lines.append(f"        no final numbers from {', '.join(check.missing_reports)}")
        lines += [f"        {note}" for note in check.notes]
    lines += warnings
    status = EXIT_OK
    if total_unaccounted:
        status = EXIT_LOST
        note = (
            " (stopped while the source was still publishing: frames in flight at "
            "that moment cannot be delivered)"
            if early
            else ""
        )
        lines.append(f"RESULT: {total_unaccounted} frame(s) vanished unaccounted{note}")
    if failed:
        status = EXIT_LOST
        lines.append(f"RESULT: stage(s) failed: {', '.join(failed)}")
    if status == EXIT_OK and warnings:
        status = EXIT_WARNINGS
        lines.append(
            f"RESULT: every frame is accounted for, with warnings: {len(warnings)} consumer "
            "set(s) counted more frames than were published, so their missed counts are "
            "wrong (see WARNING above)"
        )
    elif status == EXIT_OK:
        lost = f" ({total_lost} of them counted as lost)" if total_lost else ""
        lines.append(f"RESULT: ok, every frame is accounted for{lost}")
    return lines, status


def _over_accounting_warning(check: SetCheck, over: set[str]) -> str:
    """One line saying which set over-counted, the likely cause and what to do."""
    cset = check.cset
    head = (
        f"WARNING: {cset.label} <- {', '.join(cset.channels)} accounts for {check.extra} "
        f"frame(s) more than were published: its missed count includes frames that were "
        f"never meant for it."
    )
    upstream = [label for label in check.fed_by if label in over]
    if upstream:
        return (
            f"{head} Its producers did not publish those ids: this follows from the "
            f"over-counting of {', '.join(upstream)}; fix that one."
        )
    if cset.distributor is not None:
        group = cset.distributor[0]
        which = f"group {group!r}" if group else "the default group"
        return (
            f"{head} Likely cause: another client reads {cset.channels[0]} through the "
            f"distributor in the same group ({which}), e.g. a second copy of this "
            f"workflow or a consumer started by hand, and took its share of the stream. "
            f"Give this workflow's consumers a distributor-group of their own (each group "
            f"gets the whole stream), run a second copy with --channel-prefix, or make "
            f"n-distributor-sets match the sets reading the channel."
        )
    return (
        f"{head} Likely cause: its input is not numbered in the steps it expects; check "
        f"oid-offset (and oid-field) against the ids that channel carries."
    )


def _counts(report: dict) -> dict:
    r = report.get("receiverStats") or {}
    p = report.get("processorStats") or {}
    skipped = int(r.get("nSkipped", 0))
    if "nConnects" in r:
        # The first update of each connection is the channel's current value, not a
        # frame of the stream: only skips beyond those are frames.
        skipped = max(0, skipped - int(r.get("nConnects", 0)))
    else:
        producers = [v for v in (report.get("producerStats") or {}).values() if isinstance(v, dict)]
        skipped = sum(max(0, int(v.get("nSkipped", 0)) - 1) for v in producers)
    return {
        "processed": int(p.get("nProcessed", 0)),
        "missed": int(p.get("nMissed", 0)),
        "rejected": int(r.get("nRejected", 0)),
        "errors": int(p.get("nErrors", 0)) + int(r.get("nErrors", 0)),
        "skipped": skipped,
        "overruns": int(r.get("nOverruns", 0)),
        "published": int((report.get("publisherStats") or {}).get("nPublished", 0)),
    }


def _accounted(c: dict) -> int:
    return c["processed"] + c["missed"] + c["rejected"] + c["errors"] + c["skipped"]


class Runner:
    """Starts, watches and stops the stages of one workflow (main thread only)."""

    def __init__(self, wf: Workflow, args: Any, console: Console):
        self.wf = wf
        self.args = args
        self.console = console
        self.log_dir = args.log_dir or tempfile.mkdtemp(prefix=f"pvhpc-run-{_safe(wf.name)}-")
        os.makedirs(self.log_dir, exist_ok=True)
        env = dict(os.environ)
        self.procs: dict[str, StageProcess] = {
            s.name: StageProcess(s, self.log_dir, env) for s in wf.stages
        }
        self.watcher = StatusWatcher()
        self.interrupts = 0
        self.t0 = time.monotonic()
        self.stop_reason = ""
        self.early = False  # stopped while sources were still publishing
        self.all_arrived = False  # every consumer set accounted for every frame

    # -- signals -------------------------------------------------------------------

    def _on_signal(self, signum, _frame) -> None:
        self.interrupts += 1
        if not self.stop_reason:
            self.stop_reason = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"

    # -- numbers ---------------------------------------------------------------------

    def _live_report(self, stage: Stage, stage_id: int) -> dict | None:
        inst = next(i for i in stage.instances if i.stage_id == stage_id)
        return self.watcher.latest(inst.status) if inst.status else None

    def _report(self, stage: Stage, stage_id: int, final: bool) -> dict | None:
        if final:
            report = self.procs[stage.name].final_reports().get(stage_id)
            if report is not None:
                return report
        return self._live_report(stage, stage_id)

    def published(self, channel: str, final: bool, seen: tuple = ()) -> int | None:
        """Frames published on a channel so far (None: not known, e.g. external)."""
        endpoint = Endpoint(channel)
        stage = self.wf.provider(endpoint)
        if stage is None or stage.name in seen:
            return None
        proc = self.procs[stage.name]
        if stage.type == "sim":
            proc.read_output()
            return proc.sent if proc.sent is not None else (0 if proc.serving else None)
        if stage.type == "mirror":
            src = stage.mirrors.get(channel)
            if src is None or src.protocol != "pva":
                return None
            return self.published(src.name, final, (*seen, stage.name))
        for inst in stage.instances:
            if inst.output == channel:
                report = self._report(stage, inst.stage_id, final)
                return _counts(report)["published"] if report else None
        return None

    def check_set(self, cset: ConsumerSet, final: bool) -> SetCheck:
        total: int | None = 0
        for channel in cset.channels:
            n = self.published(channel, final)
            total = None if n is None or total is None else total + n
        check = SetCheck(cset, total)
        # Members of one named distributor set receive the same frames: the set
        # counts once, with its member that accounts for the most; a member that
        # accounts for fewer lost frames its set-mates got, with no counter saying so.
        named: dict[str, list[tuple[str, dict]]] = {}
        counted: list[dict] = []
        copies = cset.copies or [None] * len(cset.members)
        for (stage, sid), set_name in zip(cset.members, copies):
            report = self._report(stage, sid, final)
            if report is None:
                check.missing_reports.append(f"{stage.name} {sid}")
                continue
            check.reported += 1
            c = _counts(report)
            if set_name is None:
                counted.append(c)
            else:
                named.setdefault(set_name, []).append((f"{stage.name} {sid}", c))
        for set_name, members in named.items():
            sums = [(_accounted(c), who, c) for who, c in members]
            most = max(n for n, _, _ in sums)
            counted.append(next(c for n, _, c in sums if n == most))
            for n, who, _ in sums:
                if n < most:
                    check.shortfall += most - n
                    check.notes.append(
                        f"{who} accounts for {n} frames, its set-mates in set {set_name} for {most}"
                    )
        for c in counted:
            for key in ("processed", "missed", "rejected", "errors", "skipped", "overruns"):
                setattr(check, key, getattr(check, key) + c[key])
        return check

    def _signature(self) -> tuple:
        sig: list = []
        for stage in self.wf.stages:
            proc = self.procs[stage.name]
            if stage.type == "sim":
                proc.read_output()
                sig.append(proc.sent)
            for inst in stage.instances:
                report = self.watcher.latest(inst.status) if inst.status else None
                if report:
                    c = _counts(report)
                    sig.append((c["processed"], c["missed"], c["rejected"], c["published"]))
                    sig.append((report.get("receiverStats") or {}).get("nReceived"))
        return tuple(sig)

    # -- view ------------------------------------------------------------------------

    def rows(self, final: bool = False) -> list[StageRow]:
        rows: list[StageRow] = []
        for stage in self.wf.stages:
            proc = self.procs[stage.name]
            code = proc.returncode
            if stage.type == "sim":
                proc.read_output()
                if code not in (None, 0) and not proc.stopped_by_us:
                    state = "failed"
                elif proc.source_done or code is not None:
                    state = "done"
                elif proc.sent:
                    state = "sending"
                else:
                    state = "starting" if proc.popen else "-"
                rows.append(StageRow(stage.name, state=state, published=proc.sent, rate=proc.rate))
                continue
            if stage.type == "mirror":
                proc.read_output()
                for dst in stage.mirrors:
                    c = proc.mirror_counts.get(dst)
                    if code is not None:
                        state = "done" if code == 0 or proc.stopped_by_us else "failed"
                    elif c is None:
                        state = "starting"
                    else:
                        state = "ok" if c["state"].endswith("connected") else "waiting"
                        if c["overruns"] or c["errors"]:
                            state = "LOSS"
                    rows.append(
                        StageRow(
                            f"{stage.name} {dst}",
                            state=state,
                            received=c["received"] if c else None,
                            overruns=c["overruns"] if c else None,
                            errors=c["errors"] if c else None,
                            rate=c["rate"] if c else None,
                            published=c["published"] if c else None,
                        )
                    )
                continue
            for inst in stage.instances:
                report = self._report(stage, inst.stage_id, final or code is not None)
                if report is None:
                    state = "starting" if proc.running else ("failed" if code else "-")
                    rows.append(StageRow(stage.name, str(inst.stage_id), state=state))
                    continue
                rate = None if final else self.watcher.rate(inst.status) if inst.status else None
                row = row_from_status(stage.name, report, rate)
                if code is not None:
                    if code != 0 and not (proc.stopped_by_us and code in (-2, 130)):
                        row.state = "failed"
                    elif row.state != "LOSS":
                        row.state = "done"
                rows.append(row)
        return rows

    def table(self, caption: str = ""):
        elapsed = time.monotonic() - self.t0
        title = f"{self.wf.name}  {elapsed:.0f} s"
        return status_table(self.rows(), title=title, caption=caption or None)

    # -- phases ----------------------------------------------------------------------

    def say(self, text: str) -> None:
        self.console.print(text, highlight=False, markup=False, soft_wrap=True)

    def start(self) -> bool:
        """Start every stage level by level (see ``Workflow.start_levels``); False if
        one failed to come up."""
        levels = self.wf.start_levels()
        for level in levels:
            if any(s.is_source for s in level):
                # Everything that reads is up: check it found its inputs before the
                # first frame is published.
                self._wait_connected(
                    [s for s in self.wf.stages if not s.is_source and self._inputs_running(s)]
                )
            for stage in level:
                for inst in stage.instances:
                    if inst.status:
                        self.watcher.add(inst.status)
                self.procs[stage.name].start()
            if not self._wait_ready(level):
                return False
        self.say(f"all {len(self.wf.stages)} stage(s) up after {time.monotonic() - self.t0:.1f} s")
        self._wait_connected([s for s in self.wf.stages if not s.is_source])
        return True

    def _inputs_running(self, stage: Stage) -> bool:
        """True if every input of ``stage`` is served by a running consumer or collector
        (a mirror serves its channels only once its own source is up)."""
        ups = self.wf.upstream(stage)
        return bool(ups) and all(
            u.type in ("consumer", "collector") and self.procs[u.name].running for u in ups
        )

    def _connected(self, stage: Stage) -> list[str]:
        """Instances of ``stage`` whose status says an input is not connected."""
        missing = []
        for inst in stage.instances:
            report = self.watcher.latest(inst.status) if inst.status else None
            if report is None:
                continue
            producers = [
                p for p in (report.get("producerStats") or {}).values() if isinstance(p, dict)
            ]
            if producers:
                missing += [
                    f"{stage.name} {inst.stage_id} <- {p.get('channel')}"
                    for p in producers
                    if not p.get("connected", True)
                ]
            elif not (report.get("receiverStats") or {}).get("connected", True):
                missing.append(f"{stage.name} {inst.stage_id} <- {', '.join(inst.inputs)}")
        return missing

    def _wait_connected(self, stages: list[Stage], timeout: float = 20.0) -> None:
        """Wait (bounded) until the stages' inputs are connected; warn about the rest."""
        if not stages:
            return
        deadline = time.monotonic() + timeout
        while not self.stop_reason:
            missing = [m for s in stages for m in self._connected(s)]
            if not missing:
                return
            if time.monotonic() > deadline:
                self.say(
                    "warning: not connected after "
                    f"{timeout:g} s: {'; '.join(missing)} (frames sent before they connect "
                    "are not seen there)"
                )
                return
            time.sleep(0.1)

    def _ready(self, stage: Stage) -> bool:
        proc = self.procs[stage.name]
        if stage.type == "sim":
            proc.read_output()
            return proc.serving
        if stage.type == "mirror":
            return proc.running and time.monotonic() - self.t0 > 1.0
        return all(self.watcher.latest(i.status) is not None for i in stage.instances if i.status)

    def _wait_ready(self, stages: list[Stage]) -> bool:
        deadline = time.monotonic() + self.args.start_timeout
        pending = list(stages)
        while pending:
            for stage in list(pending):
                proc = self.procs[stage.name]
                if self._ready(stage):
                    pending.remove(stage)
                    self.say(f"  {stage.name}: up ({_describe(stage)})")
                elif proc.returncode is not None:
                    self.say(
                        f"{PROG}: error: stage {stage.name!r} exited (status {proc.returncode}) "
                        f"while starting:\n{_indent(proc.error_tail())}"
                    )
                    return False
            if self.stop_reason:
                self.say(f"{PROG}: interrupted while starting")
                return False
            if pending and time.monotonic() > deadline:
                names = ", ".join(s.name for s in pending)
                self.say(
                    f"{PROG}: error: stage(s) {names} did not bring up their channels within "
                    f"{self.args.start_timeout:g} s (logs in {self.log_dir})"
                )
                return False
            time.sleep(0.05)
        return True

    def watch(self) -> None:
        """Until a stop condition; shows the view."""
        duration = self.args.duration or self.wf.duration
        sources = [s for s in self.wf.stages if s.is_source]
        readers = [s for s in self.wf.stages if not s.is_source]
        mode = self.args.view
        if mode == "auto":
            mode = "live" if self.console.is_terminal else "plain"
        live = None
        if mode == "live":
            live = Live(self.table(), console=self.console, auto_refresh=False, transient=False)
            live.start()
        next_print = time.monotonic() + self.args.print_period
        drain_start: float | None = None
        last_sig: tuple | None = None
        last_change = time.monotonic()
        started = time.monotonic()
        try:
            while not self.stop_reason:
                time.sleep(0.25)
                now = time.monotonic()
                for stage in self.wf.stages:
                    proc = self.procs[stage.name]
                    code = proc.returncode
                    if code not in (None, 0) and not getattr(proc, "_reported", False):
                        proc._reported = True  # type: ignore[attr-defined]
                        self.say(
                            f"stage {stage.name!r} ended with status {code}:\n"
                            f"{_indent(proc.error_tail(6))}"
                        )
                if duration and now - started >= duration:
                    self.stop_reason = f"duration of {duration:g} s reached"
                    self.early = any(not self.procs[s.name].source_done for s in sources)
                    break
                if readers and all(self.procs[s.name].returncode is not None for s in readers):
                    self.stop_reason = "every consumer and collector has exited"
                    break
                sig = self._signature()
                if sig != last_sig:
                    last_sig, last_change = sig, now
                if sources and all(
                    self.procs[s.name].source_done or self.procs[s.name].returncode is not None
                    for s in sources
                ):
                    if drain_start is None:
                        drain_start = now
                    checks = [self.check_set(c, final=False) for c in self.wf.consumer_sets()]
                    known = [c for c in checks if c.published is not None]
                    if known and all(c.balanced for c in known) and len(known) == len(checks):
                        self.stop_reason = "the source finished and every frame arrived"
                        self.all_arrived = True
                        break
                    if now - last_change >= self.args.quiet_time:
                        self.stop_reason = "the source finished and the counts stopped changing"
                        break
                    if now - drain_start >= self.args.drain_timeout:
                        self.stop_reason = (
                            f"the stream did not drain within {self.args.drain_timeout:g} s"
                        )
                        break
                if live is not None:
                    live.update(self.table(), refresh=True)
                elif mode == "plain" and now >= next_print:
                    next_print = now + self.args.print_period
                    self.console.print(self.table())
        finally:
            if live is not None:
                live.update(self.table(), refresh=True)
                live.stop()
        if self.stop_reason in ("Ctrl-C", "SIGTERM"):
            self.early = any(
                not self.procs[s.name].source_done and self.procs[s.name].returncode is None
                for s in sources
            )

    def stop_all(self) -> None:
        """Stop every stage.

        With every frame accounted for, nothing is in flight or held: stages stop
        downstream first, each while its input is still up (a quick, exact stop).
        Otherwise upstream first, and after each stage its readers get the time to
        take what it published while stopping (a collector flushes its cache then).
        """
        self.say(f"stopping ({self.stop_reason})")
        if self.all_arrived:
            for stage in reversed(self.wf.stop_order()):
                proc = self.procs[stage.name]
                if proc.running:
                    proc.stop(grace=30.0)
            return
        order = self.wf.stop_order()
        for n, stage in enumerate(order):
            proc = self.procs[stage.name]
            hurry = self.interrupts > 1
            if proc.running:
                proc.stop(grace=5.0 if hurry else 30.0)
            if hurry or proc.popen is None:
                continue
            self._settle_readers(stage)
            if self._all_balanced():
                # Nothing left in flight: the rest can stop the quick way.
                for rest in reversed(order[n + 1 :]):
                    if self.procs[rest.name].running:
                        self.procs[rest.name].stop(grace=30.0)
                return

    def _all_balanced(self) -> bool:
        checks = [self.check_set(c, final=False) for c in self.wf.consumer_sets()]
        return all(c.balanced for c in checks)

    def _settle_readers(self, stage: Stage) -> None:
        """Wait until the stages reading ``stage`` have counted everything it published
        (or their counts stop changing), bounded."""
        readers = [s for s in self.wf.stages if stage in self.wf.upstream(s)]
        if not readers:
            return
        sets = [
            c
            for c in self.wf.consumer_sets()
            if any(m[0] in readers for m in c.members) and self.procs[c.members[0][0].name].running
        ]
        deadline = time.monotonic() + 10.0
        last_sig, last_change = None, time.monotonic()
        while time.monotonic() < deadline:
            checks = [self.check_set(c, final=False) for c in sets]
            if all(c.balanced for c in checks):
                return
            sig = self._signature()
            if sig != last_sig:
                last_sig, last_change = sig, time.monotonic()
            elif time.monotonic() - last_change > 2.5:
                return
            time.sleep(0.1)

    def _user_stats_lines(self) -> list[str]:
        """The processors' own statistics (``userStats``), one line per stage instance."""
        lines = []
        for stage in self.wf.stages:
            for inst in stage.instances:
                report = self._report(stage, inst.stage_id, final=True) or {}
                user = report.get("userStats") or {}
                pairs = [
                    f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in user.items()
                    if not isinstance(v, (dict, list))
                ]
                if pairs:
                    lines.append(f"  {stage.name} {inst.stage_id}: " + "  ".join(pairs))
        return ["processor statistics:", *lines] if lines else []

    def _feeding_sets(self, check: SetCheck, checks: list[SetCheck]) -> list[str]:
        """Labels of the sets among ``checks`` whose stages publish ``check``'s input."""
        providers = set()
        for channel in check.cset.channels:
            stage = self.wf.provider(Endpoint(channel))
            if stage is not None:
                providers.add(stage.name)
        return [
            other.cset.label
            for other in checks
            if other is not check and any(s.name in providers for s, _ in other.cset.members)
        ]

    def summary(self) -> int:
        elapsed = time.monotonic() - self.t0
        self.say("")
        self.say(f"workflow {self.wf.name}: ran {elapsed:.1f} s, stopped: {self.stop_reason}")
        self.console.print(status_table(self.rows(final=True), title="final numbers"))
        for line in self._user_stats_lines():
            self.say(line)
        failed = []
        for stage in self.wf.stages:
            proc = self.procs[stage.name]
            code = proc.returncode
            if code not in (None, 0):
                failed.append(f"{stage.name} (exit status {code})")
        checks = [self.check_set(c, final=True) for c in self.wf.consumer_sets()]
        for check in checks:
            check.fed_by = self._feeding_sets(check, checks)
        lines, status = judge(checks, failed, self.early)
        for line in lines:
            self.say(line)
        self.say(f"logs: {self.log_dir}")
        return status

    def run(self) -> int:
        handlers = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            self.say(
                f"workflow {self.wf.name}: {len(self.wf.stages)} stage(s), network "
                f"{self.wf.network}, logs in {self.log_dir}"
            )
            ok = self.start()
            if ok:
                self.watch()
            else:
                self.stop_reason = self.stop_reason or "a stage failed to start"
            self.stop_all()
            status = self.summary()
            return status if ok else 1
        finally:
            self.watcher.close()
            for proc in self.procs.values():
                if proc.running:
                    proc.stop(grace=5.0)
            for sig, handler in handlers.items():
                signal.signal(sig, handler)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines()) or "    (no output)"


def _describe(stage: Stage) -> str:
    if stage.type == "sim":
        return ", ".join(f"serves {e}" for e in stage.provides)
    if stage.type == "mirror":
        return ", ".join(f"{d} <- {s}" for d, s in stage.mirrors.items())
    ids = ",".join(str(i.stage_id) for i in stage.instances)
    inputs = sorted({c for i in stage.instances for c in i.inputs})
    return f"{stage.type} {ids} reading {', '.join(inputs)}"


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
            from ..errors import UsageError

            raise UsageError(f"--{name.replace('_', '-')} must be > 0")
    wf = load_workflow(args.workflow, args.channel_prefix)
    console = Console(width=None if sys.stdout.isatty() else 160)
    if args.check:
        _print_plan(wf, console)
        return 0
    if wf.network == "loopback":
        # The file asks for it: every EPICS search, beacon and server on 127.0.0.1,
        # for the stages and for this process's own status monitors.
        os.environ.update(LOOPBACK_ENV)
    return Runner(wf, args, console).run()


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(PROG, _body, argv)


if __name__ == "__main__":
    entry_point(main)()
