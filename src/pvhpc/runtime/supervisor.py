"""Supervising several stage processes of one command (``-nc > 1``, ``--restart-failed``).

The :class:`Supervisor` spawns one child per configuration, forwards stop requests,
prints one combined report per period, reports a child that dies, starts it again
with ``--restart-failed`` (after a back-off), and keeps the set's accounting
(:class:`~pvhpc.runtime.ledger.SetLedger`): the frames a dead child took with it
are counted, named, in the final report. Main thread only.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import multiprocessing.connection as mp_connection
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from .config import StageConfig
from .ledger import SetLedger
from .report import print_report

__all__ = ["Supervisor", "BACKOFF_FIRST", "BACKOFF_MAX", "RESTART_STATUS", "worth_showing"]

logger = logging.getLogger("pvhpc.launcher")

# Back-off before starting a dead child again: doubling from the first to the most;
# a child that ran this long without dying starts again from the first.
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 30.0
BACKOFF_RESET_AFTER = 60.0
#: A child's exit status after the ``restart`` control command (its final report
#: sent): the parent starts it again at once. (EX_TEMPFAIL of sysexits.h.)
RESTART_STATUS = 75


class _Child:
    """One child process (the current incarnation of one stage id)."""

    def __init__(self, config: StageConfig):
        self.config = config
        self.process: Any = None
        self.stop_conn: Any = None
        self.started_at = 0.0
        self.backoff = BACKOFF_FIRST
        self.restart_at: float | None = None
        self.n_deaths = 0
        self.n_restarts = 0  # deaths and restart commands
        self.fatal = False
        self.failed = ""


class Supervisor:
    """Runs ``configs`` as children made by ``child_main`` and supervises them.

    ``child_main(config, factory, stop_conn, report_conn, log_level, log_file)`` is the
    children's entry point (spawned). :meth:`run` returns the command's exit status.
    """

    def __init__(
        self,
        configs: list[StageConfig],
        factory: Callable,
        child_main: Callable,
        log_level: str | None,
        log_file: str | None,
        prog: str,
    ):
        self.configs = configs
        self.factory = factory
        self.child_main = child_main
        self.log_level = log_level
        self.log_file = log_file
        self.prog = prog
        self.kind = configs[0].kind
        self.id_name = f"{self.kind}Id"
        self.ctx = mp.get_context("spawn")
        self.children = {c.stage_id: _Child(c) for c in configs}
        self.readers: dict = {}  # report pipe (read end) -> stage id, while writable
        self.latest: dict[int, dict] = {}
        self.finals: dict[int, dict] = {}
        self.fatal: dict[str, list[int]] = {}  # one line -> the children that said it
        cfg0 = configs[0]
        self.ledger = SetLedger(
            whole_stream=self.kind == "consumer"
            and cfg0.n_distributor_sets <= 1
            and cfg0.oid_offset <= 0
        )
        self.stop_reason = ""

    # -- children --------------------------------------------------------------------

    def _spawn(self, child: _Child) -> None:
        cfg = child.config
        stop_r, stop_w = self.ctx.Pipe(duplex=False)
        report_r, report_w = self.ctx.Pipe(duplex=False)
        child.process = self.ctx.Process(
            target=self.child_main,
            name=f"{self.kind}-{cfg.stage_id}",
            args=(cfg, self.factory, stop_r, report_w, self.log_level, self.log_file),
        )
        child.process.start()
        # The child has its own copies: closing ours lets EOF tell us it is gone.
        stop_r.close()
        report_w.close()
        child.stop_conn = stop_w
        child.started_at = time.monotonic()
        child.restart_at = None
        self.readers[report_r] = cfg.stage_id

    def stop(self, reason: str) -> None:
        """Ask every child to stop (any thread; signal handlers included)."""
        if not self.stop_reason:
            self.stop_reason = reason
            logger.info("stopping all %ss: %s", self.kind, reason)
        for child in self.children.values():
            child.restart_at = None  # one waiting to start again stays stopped
            if child.stop_conn is None:
                continue
            try:
                child.stop_conn.send("stop")
            except (OSError, ValueError):  # that child is gone already
                pass

    def _collect(self, timeout: float) -> None:
        if not self.readers:
            time.sleep(timeout)
            return
        for conn in mp_connection.wait(list(self.readers), timeout):
            self._take_from(conn)

    def _take_from(self, conn) -> None:
        """One message from a child's pipe, or its end (the child exited or died)."""
        try:
            message = conn.recv()
        except (EOFError, OSError):
            self.readers.pop(conn, None)
            conn.close()
            return
        sid = message.get(self.id_name)
        if "fatal" in message:
            self.fatal.setdefault(message["fatal"], []).append(sid)
            self.children[sid].fatal = True
        elif message.get("progress"):
            self.ledger.take(message, self.id_name)
            self.latest[sid] = dict(message["stats"], **{self.id_name: sid})
        else:
            self.latest[sid] = message
            if message.get("final"):
                self.finals[sid] = message

    def _read_to_end(self, sid: int) -> None:
        """Take every message an exited child left in its pipe (up to its EOF)."""
        for conn in [c for c, k in self.readers.items() if k == sid]:
            while conn in self.readers and conn.poll(2.0):
                self._take_from(conn)

    def _watch(self, now: float) -> None:
        """Notice children that died; start them again when it is time."""
        for sid, child in self.children.items():
            p = child.process
            if child.restart_at is not None:
                if now >= child.restart_at and not self.stop_reason:
                    self._restart(child)
                continue
            if p is None or p.exitcode is None or p.exitcode == 0 or child.failed:
                continue
            if p.exitcode == RESTART_STATUS:
                # Asked for on its control channel: it drained and reported; no death.
                # (While the set stops, it is simply done.)
                if not self.stop_reason:
                    self._read_to_end(sid)  # its final report, before it counts as done
                    self.ledger.child(sid).close_incarnation()
                    child.restart_at = now
                    logger.info("%s %s restarting (restart command)", self.kind, sid)
                continue
            if child.fatal:
                child.failed = "stopped: see the error below"
                continue
            how = (
                f"killed by signal {-p.exitcode}" if p.exitcode < 0 else f"exit status {p.exitcode}"
            )
            child.n_deaths += 1
            self._read_to_end(sid)  # what it reported before it died
            self.ledger.child(sid).died(how)
            restart = child.config.restart_failed and not self.stop_reason
            if restart:
                if now - child.started_at >= BACKOFF_RESET_AFTER:
                    child.backoff = BACKOFF_FIRST
                child.restart_at = now + child.backoff
                logging.getLogger("pvhpc").error(
                    "%s %s ended unexpectedly (%s); starting it again in %g s (restart %d)",
                    self.kind,
                    sid,
                    how,
                    child.backoff,
                    child.n_deaths,
                )
            else:
                child.failed = how
                logging.getLogger("pvhpc").error(
                    "%s %s ended unexpectedly (%s); the others go on", self.kind, sid, how
                )

    def _restart(self, child: _Child) -> None:
        backoff = child.backoff
        child.n_restarts += 1
        asked = child.process is not None and child.process.exitcode == RESTART_STATUS
        child.config = replace(
            child.config, restart_count=child.n_restarts, restart_backoff=0.0 if asked else backoff
        )
        if not asked:
            child.backoff = min(backoff * 2, BACKOFF_MAX)
        self._spawn(child)

    def _alive(self) -> bool:
        return any(
            c.restart_at is not None or (c.process is not None and c.process.exitcode is None)
            for c in self.children.values()
        )

    # -- running ---------------------------------------------------------------------

    def run(self) -> int:
        for child in self.children.values():
            self._spawn(child)
        cfg0 = self.configs[0]
        period = cfg0.report_period if cfg0.report_period > 0 else None
        next_report = time.monotonic() + period if period else None
        deadline = time.monotonic() + cfg0.runtime + 30 if cfg0.runtime > 0 else None
        while True:
            self._collect(0.2)
            now = time.monotonic()
            self._watch(now)
            if not self._alive():
                break
            if next_report is not None and now >= next_report and self.latest:
                next_report += period
                print_report(
                    [self.latest[k] for k in sorted(self.latest)],
                    self.kind,
                    cfg0.report_format,
                    sections=cfg0.report_stats,
                )
            if deadline is not None and now > deadline:
                self.stop("runtime exceeded; stopping children that did not stop by themselves")
                deadline = None
        # Children have exited: collect every message still in the pipes (until EOF).
        end = time.monotonic() + 5
        while self.readers and time.monotonic() < end:
            self._collect(0.2)
        for child in self.children.values():
            if child.process is not None:
                child.process.join()
        return self._finish()

    def _unaccounted_line(self, summary: dict) -> str:
        cfg0 = self.configs[0]
        return (
            f"WARNING: {summary['nUnaccounted']} frame(s) of {cfg0.input_channel} "
            f"(ids {summary['first']}..{summary['last']}) reached no {self.kind} of this "
            f"set and none counted them as missed{_unaccounted_hint(cfg0)}"
        )

    def _finish(self) -> int:
        cfg0 = self.configs[0]
        shown = [self.finals.get(k) or self.latest[k] for k in sorted(self.latest)]
        if shown and worth_showing(shown, bool(self.fatal), cfg0):
            print_report(
                shown, self.kind, cfg0.report_format, final=True, sections=cfg0.report_stats
            )
        summary = self.ledger.summary()
        if cfg0.report_format == "json":
            print(json.dumps(dict(summary, final=True)), flush=True)
        for sid, lost in sorted(summary["lostWithConsumer"].items(), key=lambda kv: int(kv[0])):
            where = (
                f" (ids {lost['firstId']}..{lost['lastId']})" if lost["firstId"] is not None else ""
            )
            print(
                f"lost with {self.kind} {sid}: {lost['n']} frame(s){where}, taken before it "
                f"ended ({'; '.join(lost['deaths'])}) and not reported as processed",
                flush=True,
            )
        if summary["nUnaccounted"]:
            print(self._unaccounted_line(summary), flush=True)
        for message in self.fatal:
            sys.stderr.write(f"{self.prog}: error: {message}\n")
        children = self.children
        if self.fatal and all(c.fatal for c in children.values()):
            return 2
        failed = {sid: c.failed for sid, c in children.items() if c.failed}
        if failed:
            print(
                f"{len(failed)} of {len(children)} {self.kind}s failed: "
                + ", ".join(f"{self.kind} {k} ({v})" for k, v in sorted(failed.items()))
            )
            # Every child refusing its configuration is a user mistake: status 2, as for one.
            usage = len(failed) == len(children) and all(
                children[k].process.exitcode == 2 for k in failed
            )
            return 2 if usage else 1
        return 0


def _unaccounted_hint(config: StageConfig) -> str:
    if not config.distributor:
        return ""
    group = config.distributor_group or config.input_channel
    trigger = config.distributor_trigger or "timeStamp"
    hint = (
        f"; the distributor handed them to no consumer here: another client in its "
        f"group {group!r} took them"
    )
    if trigger == config.oid_field:
        return hint
    return (
        f"{hint}, or the source does not change {trigger!r} from frame to frame (the "
        f"distributor then passes on only the first frame; -dt {config.oid_field} "
        f"splits on the frame id instead)"
    )


def worth_showing(snapshots: list[dict], fatal: object, config: StageConfig) -> bool:
    """A final table of zeros adds nothing to the one error line of a stage that
    could not work at all; JSON reports are always given (programs read them)."""
    if not fatal or config.report_format == "json":
        return True
    return any(s.get("receiverStats", {}).get("nReceived") for s in snapshots)
