"""Helpers for tests that start real pvhpc processes and watch real channels."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable

import pvaccess as pva

from pvhpc.client import send_command
from pvhpc.workflow.accounting import accounted as loss_formula
from pvhpc.workflow.accounting import stage_counts
from pvhpc.workflow.process import json_lines, stop_process

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")


def unique_prefix() -> str:
    """A random channel-name prefix, so concurrent tests never share channels."""
    return "t" + uuid.uuid4().hex[:8]


def wait_for(
    condition: Callable[[], object],
    timeout: float,
    what: str,
    interval: float = 0.05,
    procs: ProcessGroup | None = None,
):
    """Poll ``condition`` until it returns a true value; fail after ``timeout`` seconds.

    If ``procs`` is given, an early exit of one of its processes fails at once.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if procs is not None:
            procs.check_alive()
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


class Proc:
    """One pvhpc process (``python -m pvhpc <args>``) with its output in a file."""

    def __init__(self, args: list[str], name: str, env: dict | None = None, module: str = "pvhpc"):
        self.args = args
        self.name = name
        self.log = tempfile.NamedTemporaryFile(prefix=f"pvhpc-{name}-", suffix=".log", delete=False)
        full_env = dict(os.environ)
        full_env["PYTHONUNBUFFERED"] = "1"
        full_env["PYTHONPATH"] = os.pathsep.join(
            [os.path.join(ROOT, "src"), EXAMPLES, full_env.get("PYTHONPATH", "")]
        )
        if env:
            full_env.update(env)
        self.popen = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=full_env,
            start_new_session=True,
        )
        self.expect_exit = False

    def output(self) -> str:
        with open(self.log.name, errors="replace") as f:
            return f.read()

    def wait_for_output(self, pattern: str, timeout: float = 30) -> re.Match:
        """Wait until the output matches ``pattern`` (regex); fails early if we exit."""
        regex = re.compile(pattern)

        def found():
            m = regex.search(self.output())
            if m is None and self.popen.poll() is not None:
                m = regex.search(self.output())
                if m is None:
                    raise AssertionError(
                        f"{self.name} exited ({self.popen.returncode}) before printing "
                        f"{pattern!r}:\n{self.output()[-3000:]}"
                    )
            return m

        return wait_for(found, timeout, f"{self.name} to print {pattern!r}")

    def wait(self, timeout: float = 60) -> int:
        """Wait for the process to exit by itself and return its exit status."""
        self.expect_exit = True
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.name} did not exit within {timeout}s:\n{self.output()[-3000:]}"
            ) from None

    def signal(self, sig: int) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)

    def stop(self, timeout: float = 20) -> int:
        """The stages' stop sequence (SIGINT, then SIGTERM, then SIGKILL); the exit status."""
        stop_process(self.popen, timeout)
        return self.popen.wait(5)


class ProcessGroup:
    """The processes of one test; stopped in reverse order of start at teardown."""

    def __init__(self):
        self.procs: list[Proc] = []

    def start(
        self, *args: str, name: str | None = None, env: dict | None = None, module: str = "pvhpc"
    ) -> Proc:
        """Start ``python -m pvhpc <args>``, e.g. ``start('sim', '-cn', ch, ...)``, or
        another ``module`` (found on ``env``'s ``PYTHONPATH``)."""
        proc = Proc([str(a) for a in args], name or f"{args[0]}{len(self.procs)}", env, module)
        self.procs.append(proc)
        return proc

    def check_alive(self) -> None:
        for p in self.procs:
            if not p.expect_exit and p.popen.poll() is not None:
                raise AssertionError(
                    f"{p.name} exited early ({p.popen.returncode}):\n{p.output()[-3000:]}"
                )

    def stop_all(self) -> None:
        for p in reversed(self.procs):
            p.stop()

    def dump(self) -> None:
        for p in self.procs:
            sys.stderr.write(f"\n----- {p.name}: {' '.join(p.args)}\n{p.output()[-6000:]}\n")


def pv_get(channel: str, timeout: float = 20, request: str = "") -> pva.PvObject:
    """Get a channel's value, retrying until the channel is up or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    ch = pva.Channel(channel)
    ch.setTimeout(2.0)
    while time.monotonic() < deadline:
        try:
            return ch.get(request) if request else ch.get("")
        except pva.PvaException as exc:
            last = exc
            time.sleep(0.1)
    raise AssertionError(f"channel {channel} not reachable in {timeout}s: {last}")


def wait_for_channel(channel: str, timeout: float = 30) -> pva.PvObject:
    """Wait until ``channel`` answers a get."""
    return pv_get(channel, timeout)


def control(channel: str, command: str, args: str = "", timeout: float = 20) -> str:
    """Put a command on a control channel; return the ``statusMessage`` that follows
    (what ``pvhpc control`` does; it waits up to ``timeout`` for the channel too)."""
    return send_command(channel, command, args, timeout)


class Recorder:
    """Monitor a channel in the test process and record what arrives."""

    def __init__(self, channel: str, field: str = "uniqueId", request: str = ""):
        self.channel = pva.Channel(channel)
        self.field = field
        self.values: list = []
        self.objects: list = []
        self.keep_objects = False
        self._lock = threading.Lock()
        self.channel.monitor(self._on_update, request or f"field({field})")

    def _on_update(self, pv):
        with self._lock:
            self.values.append(pv[self.field])
            if self.keep_objects:
                # pvaccess reuses the callback's object for the next update.
                self.objects.append(pv.copy())

    def close(self):
        try:
            self.channel.stopMonitor()
        except pva.PvaException:
            pass


RECORDING_PROCESSOR = os.path.join(ROOT, "tests", "e2e", "recording_processor.py")


def json_reports(proc: Proc) -> list[dict]:
    """The JSON report lines a stage printed with ``--report-format json``."""
    return json_lines(proc.output())


def final_reports(proc: Proc, id_name: str = "consumerId") -> dict[int, dict]:
    """Final report per stage id (from ``--report-format json`` output)."""
    return {r[id_name]: r for r in json_reports(proc) if r.get("final") and id_name in r}


def recorded(path_template: str, processor_id: int) -> dict:
    """What a RecordingProcessor wrote at stop()."""
    import json

    with open(path_template.replace("{processorId}", str(processor_id))) as f:
        return json.load(f)


def accounted(report: dict) -> int:
    """Frames one stage's report (a JSON report, or its status channel's value)
    accounts for, by the one loss formula (SPEC §5)."""
    if not isinstance(report, dict):
        report = report.toDict()
    return loss_formula(stage_counts(report))


def sim_serving(proc: Proc, timeout: float = 30) -> dict:
    """The simulator's start event (it runs with ``-rf json``): it is serving."""
    return wait_for(
        lambda: next((r for r in json_reports(proc) if r.get("event") == "serving"), None),
        timeout,
        f"{proc.name} to start serving",
    )


def sim_final_report(proc: Proc, timeout: float = 0) -> dict:
    """The simulator's final JSON report (it runs with ``-rf json``), waiting up to
    ``timeout`` seconds for it; fails early if the simulator exits without one."""

    def final():
        exited = proc.popen.poll() is not None
        reports = [r for r in json_reports(proc) if r.get("event") == "report" and r["final"]]
        assert reports or not exited, (
            f"{proc.name} exited without a final report:\n{proc.output()[-2000:]}"
        )
        return reports[-1] if reports else None

    if timeout <= 0:
        report = final()
        assert report, f"no final report in simulator output:\n{proc.output()[-2000:]}"
        return report
    return wait_for(final, timeout, f"{proc.name}'s final report")


def sim_frames_sent(proc: Proc, timeout: float = 0) -> int:
    """Frames the simulator says it published, from its final JSON report."""
    return int(sim_final_report(proc, timeout)["nSent"])


def wait_all_receiving(statuses: list[str], procs: ProcessGroup, timeout: float = 40) -> None:
    """Wait until every status channel in ``statuses`` shows a received update."""
    for channel in statuses:
        wait_for(
            lambda c=channel: pv_get(c)["receiverStats"]["nReceived"] >= 1,
            timeout,
            f"{channel} to connect",
            procs=procs,
        )


def wait_accounted(
    status_channels: list[str],
    expected: int,
    procs: ProcessGroup,
    timeout: float = 60,
    quiet: float = 3,
) -> int:
    """Wait until the stages behind ``status_channels`` account for ``expected`` frames
    together, or their counts have not moved for ``quiet`` seconds (a stage that fell
    behind may never get the last frames; at stop it counts them as missed).
    Returns the last total seen."""
    history: list[tuple[float, int]] = []

    def settled():
        now = time.monotonic()
        total = sum(accounted(pv_get(ch).get()) for ch in status_channels)
        history.append((now, total))
        if total >= expected:
            return True
        changed = [t for t, v in history if v != total]
        return now - (changed[-1] if changed else history[0][0]) > quiet

    wait_for(
        settled,
        timeout,
        f"{status_channels} to account for {expected} frames",
        procs=procs,
        interval=0.25,
    )
    return history[-1][1]


def start_mirror(procs, channel_map: str, *extra, name: str = "mirror") -> Proc:
    """``pvhpc mirror -cm CHANNEL_MAP`` (log level info), once it says it is mirroring."""
    proc = procs.start("mirror", "-cm", channel_map, "-ll", "info", *extra, name=name)
    proc.wait_for_output(r"mirroring ")
    return proc


def recording_consumer(
    procs, prefix, tmp_path, *extra, name="consumer", processor_args=None, tag="c"
):
    """A consumer command on ``PREFIX:image`` with the recording processor (ids in
    ``tmp_path/TAG-ids-<id>.json``), channels ``PREFIX:TAG:*:…``, JSON reports every 0.5 s."""
    pa = {"outputFile": str(tmp_path / f"{tag}-ids-{{processorId}}.json")}
    pa.update(processor_args or {})
    return procs.start(
        "consumer",
        "-ic",
        f"{prefix}:image",
        "-oc",
        f"{prefix}:{tag}:*:output",
        "-sc",
        f"{prefix}:{tag}:*:status",
        "-cc",
        f"{prefix}:{tag}:*:control",
        "-pf",
        RECORDING_PROCESSOR,
        "-pc",
        "RecordingProcessor",
        "-pa",
        json.dumps(pa),
        "-rp",
        "0.5",
        "-rf",
        "json",
        *extra,
        name=name,
    )


def simulator(procs, prefix, frames, fps, *extra, size=32, delay=4, name="sim"):
    """The simulator; ``delay`` seconds between its channel appearing and frame 1."""
    return procs.start(
        "sim",
        "-cn",
        f"{prefix}:image",
        "-nx",
        size,
        "-ny",
        size,
        "-fps",
        fps,
        "-rt",
        frames / fps,
        "-std",
        delay,
        "-shd",
        "120",
        "-rf",
        "json",
        *extra,
        name=name,
    )
