"""What the benchmark and chaos scripts share: a stage process and its JSON reports.

Import it first: it pins this process's EPICS traffic to loopback before pvaccess is
loaded (the scripts read status channels too). The stop sequence and the JSON
reading are the product's own (:mod:`pvhpc.workflow.process`).
"""

from __future__ import annotations

import os
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


def log(msg: str) -> None:
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stderr.flush()


def unique_prefix(tag: str) -> str:
    return f"{tag}{uuid.uuid4().hex[:6]}"


class Proc:
    """One ``python -m pvhpc`` command, its output in a temporary file."""

    def __init__(self, name: str, args: list, tag: str = "bench"):
        self.name = name
        self.args = [str(a) for a in args]
        self.out = tempfile.NamedTemporaryFile(prefix=f"{tag}-{name}-", suffix=".log", delete=False)
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "pvhpc", *self.args],
            stdout=self.out,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
            cwd=ROOT,
            start_new_session=True,
        )

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

    def stop(self, grace: float = 30.0) -> int | None:
        """The stages' stop sequence: SIGINT, then SIGTERM, then SIGKILL."""
        return stop_process(self.popen, grace)


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
