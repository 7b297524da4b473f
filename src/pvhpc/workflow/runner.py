"""Running a workflow: start its stages in order, watch them, stop them, check them.

1. Stages start readers first, sources last: consumers and collectors are up and
   listening (their status channels answer) before a simulator publishes frame 1.
2. A live table (one row per consumer/collector, the simulators' frame counts, the
   mirrors' channels) refreshes while the workflow runs.
3. The workflow stops on Ctrl-C, after ``duration``, or when every simulator has
   finished and the stream has drained (every consumer set has accounted for all
   frames, or the counts stopped changing). Stages stop upstream first, each
   draining what it holds before the next one is stopped.
4. A summary gives every stage's final numbers and checks the loss invariant of
   SPEC §5 for every consumer set (:mod:`pvhpc.workflow.accounting`).

Every stage's output goes to ``<log-dir>/<stage>.out`` and ``.err``.
"""

from __future__ import annotations

import os
import re
import signal
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

from rich.console import Console
from rich.live import Live

from .accounting import SetCheck, judge
from .launch import Launcher, LocalLauncher
from .model import Endpoint, StageSpec, Workflow
from .observer import Observer
from .process import StageProcess
from .view import StatusWatcher, status_table

__all__ = ["Runner", "RunOptions"]

PROG = "pvhpc run"


@dataclass
class RunOptions:
    """How :class:`Runner` runs a workflow (``pvhpc run``'s options)."""

    #: Where the stages' output goes (None: a new temporary directory).
    log_dir: str | None = None
    #: ``live`` (table refreshed in place), ``plain`` (a table every print_period s),
    #: ``none``, or ``auto`` (live on a terminal, else plain).
    view: str = "auto"
    print_period: float = 10.0
    #: Stop after this many seconds (0: the workflow file's duration, or none).
    duration: float = 0.0
    start_timeout: float = 60.0
    drain_timeout: float = 60.0
    quiet_time: float = 3.0


class Runner:
    """Starts, watches and stops the stages of one workflow (main thread only).

    :meth:`run` does it all and returns ``pvhpc run``'s exit status; it installs
    SIGINT/SIGTERM handlers for its duration (a first signal stops the workflow
    cleanly, a second one hurries the stop). ``launcher`` (prepared) starts the
    stages: here by default, or on their hosts (:mod:`pvhpc.workflow.launch`).

    ``tick_hooks`` are called with the runner in the main thread, several times a
    second while stages start and run, once more when the stop begins and once
    after the summary (``summary_lines`` and ``exit_status`` set): a live view other
    than the table (the web dashboard) reads the observer there. They must not block.
    """

    def __init__(
        self,
        wf: Workflow,
        options: RunOptions,
        console: Console,
        launcher: Launcher | None = None,
    ):
        self.wf = wf
        self.options = options
        self.console = console
        self.log_dir = options.log_dir or tempfile.mkdtemp(prefix=f"pvhpc-run-{_safe(wf.name)}-")
        os.makedirs(self.log_dir, exist_ok=True)
        if launcher is None:
            launcher = LocalLauncher(wf)
            launcher.prepare()
        self.launcher = launcher
        self.procs: dict[str, StageProcess] = {
            s.name: launcher.process(s, self.log_dir) for s in wf.stages
        }
        self.watcher = StatusWatcher()
        self.observer = Observer(wf, self.procs, self.watcher)
        self.interrupts = 0
        self.t0 = time.monotonic()
        self.stop_reason = ""
        self.early = False  # stopped while sources were still publishing
        self.all_arrived = False  # every consumer set accounted for every frame
        self.tick_hooks: list[Callable[[Runner], None]] = []
        self.summary_lines: list[str] = []
        self.exit_status: int | None = None

    def request_stop(self, reason: str) -> None:
        """Stop the workflow as Ctrl-C does, for ``reason`` (any thread)."""
        if not self.stop_reason:
            self.stop_reason = reason

    def _tick(self) -> None:
        for hook in self.tick_hooks:
            hook(self)

    # -- signals -------------------------------------------------------------------

    def _on_signal(self, signum, _frame) -> None:
        self.interrupts += 1
        if not self.stop_reason:
            self.stop_reason = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"

    def table(self, caption: str = ""):
        elapsed = time.monotonic() - self.t0
        title = f"{self.wf.name}  {elapsed:.0f} s"
        return status_table(self.observer.rows(), title=title, caption=caption or None)

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

    def _inputs_running(self, stage: StageSpec) -> bool:
        """True if every input of ``stage`` is served by a running consumer or collector
        (a mirror serves its channels only once its own source is up)."""
        ups = self.wf.upstream(stage)
        return bool(ups) and all(
            u.type in ("consumer", "collector") and self.procs[u.name].running for u in ups
        )

    def _connected(self, stage: StageSpec) -> list[str]:
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
                    f"{stage.label} {inst.stage_id} <- {p.get('channel')}"
                    for p in producers
                    if not p.get("connected", True)
                ]
            elif not (report.get("receiverStats") or {}).get("connected", True):
                missing.append(f"{stage.label} {inst.stage_id} <- {', '.join(inst.inputs)}")
        return missing

    def _wait_connected(self, stages: list[StageSpec], timeout: float = 20.0) -> None:
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

    def _ready(self, stage: StageSpec) -> bool:
        proc = self.procs[stage.name]
        if stage.type == "sim":
            proc.read_output()
            return proc.serving
        if stage.type == "mirror":
            proc.read_output()
            return proc.serving
        return all(self.watcher.latest(i.status) is not None for i in stage.instances if i.status)

    def _wait_ready(self, stages: list[StageSpec]) -> bool:
        deadline = time.monotonic() + self.options.start_timeout
        pending = list(stages)
        while pending:
            for stage in list(pending):
                proc = self.procs[stage.name]
                if self._ready(stage):
                    pending.remove(stage)
                    self.say(f"  {stage.label}: up ({_describe(stage)})")
                elif proc.returncode is not None:
                    self.say(
                        f"{PROG}: error: stage {stage.label!r} exited "
                        f"({proc.failure() if proc.lost else f'status {proc.returncode}'}) "
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
                    f"{self.options.start_timeout:g} s (logs in {self.log_dir})"
                )
                return False
            time.sleep(0.05)
        return True

    def watch(self) -> None:
        """Until a stop condition; shows the view."""
        duration = self.options.duration or self.wf.duration
        sources = [s for s in self.wf.stages if s.is_source]
        readers = [s for s in self.wf.stages if not s.is_source]
        mode = self.options.view
        if mode == "auto":
            mode = "live" if self.console.is_terminal else "plain"
        live = None
        if mode == "live":
            live = Live(self.table(), console=self.console, auto_refresh=False, transient=False)
            live.start()
        next_print = time.monotonic() + self.options.print_period
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
                    if code not in (None, 0) and not proc.reported_failure:
                        proc.reported_failure = True
                        ended = (
                            f"failed: {proc.failure()}"
                            if proc.lost
                            else f"ended with status {code}"
                        )
                        self.say(f"stage {stage.label!r} {ended}:\n{_indent(proc.error_tail(6))}")
                if duration and now - started >= duration:
                    self.stop_reason = f"duration of {duration:g} s reached"
                    self.early = any(not self.procs[s.name].source_done for s in sources)
                    break
                if readers and all(self.procs[s.name].returncode is not None for s in readers):
                    self.stop_reason = "every consumer and collector has exited"
                    break
                sig = self.observer.signature()
                if sig != last_sig:
                    last_sig, last_change = sig, now
                if sources and all(
                    self.procs[s.name].source_done or self.procs[s.name].returncode is not None
                    for s in sources
                ):
                    if drain_start is None:
                        drain_start = now
                    checks = [
                        self.observer.check_set(c, final=False) for c in self.wf.consumer_sets()
                    ]
                    known = [c for c in checks if c.published is not None]
                    if known and all(c.balanced for c in known) and len(known) == len(checks):
                        self.stop_reason = "the source finished and every frame arrived"
                        self.all_arrived = True
                        break
                    if now - last_change >= self.options.quiet_time:
                        self.stop_reason = "the source finished and the counts stopped changing"
                        break
                    if now - drain_start >= self.options.drain_timeout:
                        self.stop_reason = (
                            f"the stream did not drain within {self.options.drain_timeout:g} s"
                        )
                        break
                self._tick()
                if live is not None:
                    live.update(self.table(), refresh=True)
                elif mode == "plain" and now >= next_print:
                    next_print = now + self.options.print_period
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
        checks = [self.observer.check_set(c, final=False) for c in self.wf.consumer_sets()]
        return all(c.balanced for c in checks)

    def _settle_readers(self, stage: StageSpec) -> None:
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
            checks = [self.observer.check_set(c, final=False) for c in sets]
            if all(c.balanced for c in checks):
                return
            sig = self.observer.signature()
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
                report = self.observer.report(stage, inst.stage_id, final=True) or {}
                user = report.get("userStats") or {}
                pairs = [
                    f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in user.items()
                    if not isinstance(v, (dict, list))
                ]
                if pairs:
                    lines.append(f"  {stage.label} {inst.stage_id}: " + "  ".join(pairs))
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
        self.console.print(status_table(self.observer.rows(final=True), title="final numbers"))
        for line in self._user_stats_lines():
            self.say(line)
        failed = []
        for stage in self.wf.stages:
            proc = self.procs[stage.name]
            code = proc.returncode
            if code not in (None, 0):
                failed.append(f"{stage.label} ({proc.failure()})")
        checks = [self.observer.check_set(c, final=True) for c in self.wf.consumer_sets()]
        for check in checks:
            check.fed_by = self._feeding_sets(check, checks)
        lines, status = judge(checks, failed, self.early)
        self.summary_lines = lines
        for line in lines:
            self.say(line)
        self.say(f"logs: {self.log_dir}")
        return status

    def run(self) -> int:
        handlers = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            launcher = "" if self.launcher.name == "local" else f", launcher {self.launcher.name}"
            self.say(
                f"workflow {self.wf.name}: {len(self.wf.stages)} stage(s), network "
                f"{self.wf.network}{launcher}, logs in {self.log_dir}"
            )
            for note in self.wf.notes:
                self.say(note)
            ok = self.start()
            if ok:
                self.watch()
            else:
                self.stop_reason = self.stop_reason or "a stage failed to start"
            self._tick()
            self.stop_all()
            status = self.summary()
            self.exit_status = status if ok else 1
            self._tick()
            return self.exit_status
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


def _describe(stage: StageSpec) -> str:
    if stage.type == "sim":
        return ", ".join(f"serves {e}" for e in stage.provides)
    if stage.type == "mirror":
        return ", ".join(f"{d} <- {s}" for d, s in stage.mirrors.items())
    ids = ",".join(str(i.stage_id) for i in stage.instances)
    inputs = sorted({c for i in stage.instances for c in i.inputs})
    return f"{stage.type} {ids} reading {', '.join(inputs)}"
