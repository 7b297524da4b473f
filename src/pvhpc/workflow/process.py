"""One stage process: start it, stop it the one way stages are stopped, read its reports.

Stages report for programs as JSON, one object a line on stdout
(``--report-format json``): consumers and collectors their statistics snapshots,
the mirror its per-channel counts, the simulator its frame counts. Nothing here
reads a report written for people. :func:`stop_process`, :func:`json_lines` and
:func:`final_reports` are shared by the workflow runner, the tests and the
benchmarks.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterable

from .model import StageSpec

__all__ = ["StageProcess", "stop_process", "json_lines", "final_reports"]


def stop_process(
    popen: subprocess.Popen, grace: float, term_wait: float = 5.0, kill_wait: float = 5.0
) -> int | None:
    """Stop a stage: SIGINT and ``grace`` seconds to drain and exit, then SIGTERM, then
    SIGKILL of its whole process group (it was started in a session of its own).
    Returns the exit status (None if it could not be reaped). Blocks."""
    for sig, wait in (
        (signal.SIGINT, grace),
        (signal.SIGTERM, term_wait),
        (signal.SIGKILL, kill_wait),
    ):
        if popen.poll() is not None:
            break
        try:
            if sig == signal.SIGKILL:
                os.killpg(popen.pid, sig)
            else:
                popen.send_signal(sig)
        except ProcessLookupError:
            break
        try:
            popen.wait(wait)
        except subprocess.TimeoutExpired:
            continue
    return popen.poll()


def json_lines(text: str) -> list[dict]:
    """Every line of ``text`` that is a JSON object, parsed, in order."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                out.append(value)
    return out


def final_reports(reports: Iterable[dict], id_name: str) -> dict[int, dict]:
    """Per stage id (``consumerId``/``collectorId``), its final report, or its latest
    one if it printed no final report (it died)."""
    finals: dict[int, dict] = {}
    latest: dict[int, dict] = {}
    for report in reports:
        sid = report.get(id_name)
        if sid is None:
            continue
        latest[sid] = report
        if report.get("final"):
            finals[sid] = report
    return {**latest, **finals}


class StageProcess:
    """One workflow stage's command (``python -m pvhpc <type> …``), its output in files.

    Main thread only. :meth:`read_output` follows stdout for the simulator's frame
    counts and the mirror's channel counts; :meth:`final_reports` gives the
    consumers' and collectors' final numbers.
    """

    def __init__(self, stage: StageSpec, log_dir: str, env: dict):
        self.stage = stage
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", stage.name)
        self.out_path = os.path.join(log_dir, f"{safe}.out")
        self.err_path = os.path.join(log_dir, f"{safe}.err")
        self.env = dict(env, **stage.env, PYTHONUNBUFFERED="1")
        self.popen: subprocess.Popen | None = None
        self.stopped_by_us = False
        self.reported_failure = False
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

    @property
    def lost(self) -> bool:
        """True if the stage's host was lost (remote stages only)."""
        return False

    def failure(self) -> str:
        """How the stage ended, for the summary: ``exit status 1``."""
        return f"exit status {self.returncode}"

    def stop(self, grace: float) -> int | None:
        """The stop sequence of :func:`stop_process`."""
        if self.popen is None:
            return None
        self.stopped_by_us = True
        return stop_process(self.popen, grace)

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
        for report in json_lines("\n".join(lines)):
            self._take(report)

    def _take(self, report: dict) -> None:
        if report.get("event") in ("serving", "mirroring"):
            self.serving = True
        if "nSent" in report:  # the simulator
            self.serving = True
            self.sent = int(report["nSent"])
            self.rate = float(report.get("rate", 0.0))
            self.source_done = self.source_done or bool(report.get("final"))
        for c in report.get("channels", ()):  # the mirror
            if c.get("dst") not in self.stage.mirrors:
                continue
            n, up = int(c.get("n_monitors", 1)), int(c.get("connected", 0))
            state = "waiting" if up == 0 else ("connected" if n == 1 else f"{up}/{n} connected")
            self.mirror_counts[c["dst"]] = {
                "received": int(c.get("received", 0)),
                "published": int(c.get("published", 0)),
                "rate": float(c.get("publishedRate", 0.0)),
                "overruns": int(c.get("overruns", 0)),
                "errors": int(c.get("errors", 0)),
                "state": state,
            }

    def final_reports(self) -> dict[int, dict]:
        """The final JSON report of each consumer/collector id (from stdout)."""
        try:
            with open(self.out_path, errors="replace") as f:
                text = f.read()
        except OSError:
            return {}
        return final_reports(json_lines(text), f"{self.stage.type}Id")

    def set_summaries(self) -> list[dict]:
        """The consumer-set reports of a supervising parent (``-nc > 1`` or
        ``--restart-failed``): the frames dead children took with them."""
        try:
            with open(self.out_path, errors="replace") as f:
                text = f.read()
        except OSError:
            return []
        return [r for r in json_lines(text) if r.get("kind") == "consumer-set"]

    def error_tail(self, n: int = 12) -> str:
        try:
            with open(self.err_path, errors="replace") as f:
                lines = f.read().splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])
