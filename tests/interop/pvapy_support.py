"""Helpers of the PvaPy interoperability tests (test_pvapy_*.py).

* :func:`start_reference` starts one of the reference's commands
  (``python -c 'from pvapy.cli.hpcConsumer import main; main()' ...``) as a member of
  the test's :class:`harness.ProcessGroup`, so it is stopped and dumped like ours.
* :class:`FrameRecorder` monitors an output channel with a client queue and keeps
  every frame's id, pixels and chosen fields.
* :func:`processor_file` names a fixture of ``pvapy_processors/``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import threading

import numpy as np
import pvaccess as pva

from harness import ROOT, Proc, ProcessGroup
from pvhpc.processors.ad_image import get_image

HERE = os.path.dirname(os.path.abspath(__file__))
PROCESSORS = os.path.join(HERE, "pvapy_processors")

#: The reference's commands, run from the pvapy wheel as its docs show.
REFERENCE = {
    "consumer": "from pvapy.cli.hpcConsumer import main; main()",
    "collector": "from pvapy.cli.hpcCollector import main; main()",
}
REFERENCE_PASSTHROUGH = "pvapy.hpc.userDataProcessor.UserDataProcessor"


def processor_file(name: str) -> str:
    """The path of the fixture processor file ``pvapy_processors/<name>.py``."""
    path = os.path.join(PROCESSORS, f"{name}.py")
    assert os.path.isfile(path), path
    return path


class ReferenceProc(Proc):
    """A reference command (``python -c <code> <args>``) with its output in a file.

    Same life cycle as :class:`harness.Proc` (stop, output, wait_for_output); only the
    command line differs. ``PYTHONPATH`` does not carry pvhpc's sources: the reference
    runs on the installed wheel alone.
    """

    def __init__(self, code: str, args: list[str], name: str):
        self.args = args
        self.name = name
        self.log = tempfile.NamedTemporaryFile(prefix=f"ref-{name}-", suffix=".log", delete=False)
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        env.pop("PYTHONPATH", None)
        self.popen = subprocess.Popen(
            [sys.executable, "-c", code, *args],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
            start_new_session=True,
        )
        self.expect_exit = False

    def stop(self, timeout: float = 20) -> int:
        """End the command and every process it forked (``-nc`` consumers): they share
        its process group. The reference ignores SIGINT and a SIGTERM to its main
        process alone leaves the consumers it forked running, so: SIGTERM, then
        SIGKILL, to the whole group. (A clean stop is the ``stop`` control command.)"""
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5)):
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.popen.wait(wait)
            except subprocess.TimeoutExpired:
                continue
            if not _group_alive(self.popen.pid):
                break
        return self.popen.wait(5)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def start_reference(procs: ProcessGroup, tool: str, *args, name: str) -> ReferenceProc:
    """Start the reference's ``tool`` (``consumer`` or ``collector``) in ``procs``."""
    proc = ReferenceProc(REFERENCE[tool], [str(a) for a in args], name)
    procs.procs.append(proc)
    return proc


def reference_reports(proc: Proc) -> dict[int, dict[str, dict[str, int]]]:
    """The last report the reference printed for each consumer id: for each of its
    ``processorStats``, ``publisherStats`` and ``receiverStats``, the integer counts
    (``{'nPublished': 50, ...}``). The reference prints a Python dict per consumer
    at every report period and when it ends."""
    out: dict[int, dict[str, dict[str, int]]] = {}
    for block in proc.output().split("{ 'consumerId': ")[1:]:
        m = re.match(r"(\d+),", block)
        if m is None:
            continue
        stats = {}
        for group in ("processorStats", "publisherStats", "receiverStats"):
            g = re.search(rf"'{group}': \{{([^}}]*)\}}", block)
            if g is not None:
                stats[group] = {
                    k: int(v) for k, v in re.findall(r"'(n\w+)': (\d+)\b(?!\.)", g.group(1))
                }
        if len(stats) == 3:
            out[int(m.group(1))] = stats
    return out


class FrameRecorder:
    """Monitor ``channel`` (client queue ``queue_size``) and keep every update:
    ``ids`` in arrival order, ``images[id]`` (a copy of the pixels) and, for each name
    of ``fields``, ``fields[id][name]``. An id that arrives again is counted in
    ``repeats`` (its first pixels are kept)."""

    def __init__(self, channel: str, fields: tuple[str, ...] = (), queue_size: int = 100):
        self.ids: list[int] = []
        self.images: dict[int, np.ndarray] = {}
        self.fields: dict[int, dict] = {}
        self.repeats = 0
        self._names = fields
        self._lock = threading.Lock()
        self.channel = pva.Channel(channel)
        self.channel.monitor(self._on_update, f"record[queueSize={queue_size}]field()")

    def _on_update(self, pv) -> None:
        frame_id = pv["uniqueId"]
        image = np.array(get_image(pv))
        extra = {n: pv[n] for n in self._names}
        with self._lock:
            self.ids.append(frame_id)
            if frame_id in self.images:
                self.repeats += 1
                return
            self.images[frame_id] = image
            self.fields[frame_id] = extra

    def count(self, minimum_id: int = 1) -> int:
        """How many distinct ids >= ``minimum_id`` arrived."""
        with self._lock:
            return len([k for k in self.images if k >= minimum_id])

    def close(self) -> None:
        try:
            self.channel.stopMonitor()
        except pva.PvaException:
            pass
