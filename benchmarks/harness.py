"""What the benchmark and chaos scripts share: a stage process and its JSON reports.

Import it first: it pins this process's EPICS traffic to loopback before pvaccess is
loaded (the scripts read status channels too). The stop sequence and the JSON
reading are the product's own (:mod:`pvhpc.workflow.process`).
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from pvhpc.loopback import LOOPBACK_ENV

os.environ.update(LOOPBACK_ENV)

import psutil  # noqa: E402
import pvaccess as pva  # noqa: E402

from pvhpc.workflow.process import json_lines, stop_process  # noqa: E402

__all__ = ["ROOT", "Proc", "log", "get", "wait_for", "unique_prefix"]

ROOT = Path(__file__).resolve().parents[1]

# Started in the background by a shell, a script inherits SIGINT ignored, and so would
# every process it starts: the reference's commands then never stop on SIGINT.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def log(msg: str) -> None:
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stderr.flush()


def unique_prefix(tag: str) -> str:
    return f"{tag}{uuid.uuid4().hex[:6]}"


class Proc:
    """One benchmark process (and its children), its output in a file.

    ``args`` are the arguments of ``python -m pvhpc``; with ``cmd``, the whole command
    instead (the reference's commands, ``floor.py``); ``cpus``: the cores it may run
    on (all if not given). The output goes to a temporary
    file, or to ``logdir`` (numbered, the command on its first line). Started in a
    session of its own, so that :meth:`stop` reaches its children too.
    """

    _seq = itertools.count(1)

    def __init__(
        self,
        name: str,
        args: list | None = None,
        tag: str = "bench",
        *,
        cmd: list | None = None,
        logdir: Path | None = None,
        env: dict | None = None,
        cpus: set[int] | None = None,
    ):
        self.name = name
        full = [str(a) for a in cmd] if cmd is not None else None
        self.args = [str(a) for a in args or []]
        if full is None:
            full = [sys.executable, "-m", "pvhpc", *self.args]
        if logdir is not None:
            safe = re.sub(r"[^\w.-]+", "_", name)
            self.out = open(Path(logdir) / f"{next(self._seq):04d}-{safe}.out", "w+b")
            self.out.write((" ".join(full) + "\n").encode())
            self.out.flush()
        else:
            self.out = tempfile.NamedTemporaryFile(
                prefix=f"{tag}-{name}-", suffix=".log", delete=False
            )
        self.path = Path(self.out.name)
        self.popen = subprocess.Popen(
            full,
            stdout=self.out,
            stderr=subprocess.STDOUT,
            env=env if env is not None else dict(os.environ, PYTHONUNBUFFERED="1"),
            cwd=ROOT,
            start_new_session=True,
            # Before exec: every thread the process starts later is on these cores too.
            preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
        )
        self.ps = psutil.Process(self.popen.pid)
        self.peak_rss = 0
        self.peak_rss_each: list[int] = []

    def text(self) -> str:
        with open(self.out.name, errors="replace") as f:
            return f.read()

    def reports(self) -> list[dict]:
        return json_lines(self.text())

    def alive(self) -> bool:
        return self.popen.poll() is None

    def children(self) -> list[psutil.Process]:
        """The stage processes a supervising parent spawned (not its resource tracker)."""
        try:
            kids = psutil.Process(self.popen.pid).children()
        except psutil.Error:
            return []
        return [k for k in kids if "resource_tracker" not in " ".join(k.cmdline())]

    def tree(self) -> list[psutil.Process]:
        try:
            return [self.ps, *self.ps.children(recursive=True)]
        except psutil.Error:
            return []

    def cpu(self) -> float:
        """CPU seconds of the process and its live children, all their threads, also
        the threads that have ended.

        From each process's CPU-time clock (the clock id ``clock_getcpuclockid(pid)``
        returns): the scheduler's nanosecond count for the whole thread group. Summing
        ``/proc/PID/task/*/schedstat`` sees only live threads, and missed most of the
        reference simulator's CPU, spent in short-lived threads. Falls back to that
        sum, then to ``cpu_times`` (10 ms clock ticks).
        """
        total = 0.0
        for p in self.tree():
            try:
                total += _process_cpu_seconds(p.pid)
            except OSError:
                try:
                    t = p.cpu_times()
                    total += t.user + t.system
                except psutil.Error:
                    pass
        return total

    def sample_rss(self) -> int:
        each = []
        for p in self.tree():
            try:
                each.append(p.memory_info().rss)
            except psutil.Error:
                pass
        total = sum(each)
        if total > self.peak_rss:
            self.peak_rss = total
            self.peak_rss_each = each
        return total

    def wait_line(self, pattern: str, timeout: float, procs=()) -> re.Match | None:
        """Wait for an output line matching ``pattern`` (sampling the memory of
        ``procs`` meanwhile); None on timeout or exit."""
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern, re.M)
        while True:
            m = rx.search(self.text())
            if m:
                return m
            if not self.alive() or time.monotonic() > deadline:
                return None
            for p in procs:
                p.sample_rss()
            time.sleep(0.05)

    def stop(self, grace: float = 30.0) -> int | None:
        """The stages' stop sequence: SIGINT, then SIGTERM, then SIGKILL."""
        t0 = time.monotonic()
        code = stop_process(self.popen, grace)
        self.out.close()
        if time.monotonic() - t0 > 3:
            log(f"    ({self.name} took {time.monotonic() - t0:.1f} s to stop)")
        return code


def _process_cpu_seconds(pid: int) -> float:
    """CPU time of process ``pid``, all its threads ever, from its CPU-time clock."""
    try:
        # The clock id glibc's clock_getcpuclockid(pid) makes: CPUCLOCK_SCHED of the
        # process (not of one thread).
        return time.clock_gettime_ns(((~pid) << 3) | 2) / 1e9
    except (OSError, OverflowError):
        return _schedstat_seconds(pid)


def _schedstat_seconds(pid: int) -> float:
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass  # the thread ended meanwhile
    return total / 1e9


def get(channel: str, timeout: float = 5.0):
    """One get of a channel, as a dict; None if it does not answer."""
    try:
        ch = pva.Channel(channel)
        ch.setTimeout(timeout)
        return ch.get("").toDict()
    except pva.PvaException:
        return None


def wait_for(condition, timeout: float, interval: float = 0.25):
    """Poll ``condition`` until true; its value, or None after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    return None
