"""`pvhpc get|monitor|control|status` against real running stages.

A stream: a simulator that sent FRAMES frames and two consumers sharing them through
the distributor, each having processed FRAMES/2. Tests that only look at it share one
for the module (``stream``; checked unchanged before and after each test); tests
that change the consumers (configure, reset_stats, stop) get one of their own
(``own_stream``), so that no test depends on another having run, or not, before it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys

import pexpect
import pytest

from harness import RECORDING_PROCESSOR, ProcessGroup, control, pv_get, unique_prefix, wait_for

pytestmark = pytest.mark.e2e

FRAMES = 40
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]")


@contextlib.contextmanager
def running_stream(out):
    """Start the stream; yield ``(prefix, group, consumers, out)`` once each consumer
    has processed its FRAMES/2 frames; stop every process at the end."""
    prefix = unique_prefix()
    group = ProcessGroup()
    try:
        consumers = group.start(
            "consumer",
            "-ic",
            f"{prefix}:image",
            "-oc",
            f"{prefix}:c:*:output",
            "-sc",
            f"{prefix}:c:*:status",
            "-cc",
            f"{prefix}:c:*:control",
            "-nc",
            "2",
            "-du",
            "1",
            "-sqs",
            "100",
            "-rp",
            "0.5",
            "-pf",
            RECORDING_PROCESSOR,
            "-pc",
            "RecordingProcessor",
            "-pa",
            json.dumps({"outputFile": str(out / "ids-{processorId}.json")}),
            name="consumers",
        )
        for i in (1, 2):
            wait_for(lambda i=i: pv_get(f"{prefix}:c:{i}:status"), 30, f"consumer {i}", procs=group)
        sim = group.start(
            "sim",
            "-cn",
            f"{prefix}:image",
            "-nx",
            "32",
            "-ny",
            "24",
            "-fps",
            "40",
            "-rt",
            str(FRAMES / 40),
            "-std",
            "3",
            "-shd",
            "120",
            name="sim",
        )
        for i in (1, 2):
            wait_for(
                lambda i=i: pv_get(f"{prefix}:c:{i}:status")["receiverStats"]["connected"],
                30,
                f"consumer {i} to connect",
                procs=group,
            )
        sim.wait_for_output(r"done, sent 40 frames", 30)
        wait_for(
            lambda: (
                sum(
                    pv_get(f"{prefix}:c:{i}:status")["processorStats"]["nProcessed"] for i in (1, 2)
                )
                == FRAMES
            ),
            20,
            "the consumers to process every frame",
            procs=group,
        )
        yield prefix, group, consumers, out
    finally:
        group.stop_all()


@pytest.fixture(scope="module")
def shared_stream(tmp_path_factory):
    with running_stream(tmp_path_factory.mktemp("ops")) as stream_:
        yield stream_


def assert_unchanged(stream_) -> None:
    """The shared stream is as it was made: both consumers up, each having received
    the initial update and FRAMES/2 frames and processed those, never configured."""
    prefix, group = stream_[:2]
    group.check_alive()
    for i in (1, 2):
        # Fresh numbers: the processor's own (userStats) are published every period.
        assert control(f"{prefix}:c:{i}:control", "get_stats").startswith("Statistics published")
        status = pv_get(f"{prefix}:c:{i}:status")
        seen = (
            status["receiverStats"]["nReceived"],
            status["processorStats"]["nProcessed"],
            status["userStats"]["x"],
        )
        assert seen == (FRAMES // 2 + 1, FRAMES // 2, 0), f"consumer {i} was changed: {seen}"


@pytest.fixture
def stream(shared_stream):
    """The module's stream, for tests that only look at it. A test that changed it
    fails itself (at teardown), not the test that happens to come next."""
    assert_unchanged(shared_stream)
    yield shared_stream
    assert_unchanged(shared_stream)


@pytest.fixture
def own_stream(tmp_path):
    """A stream of the test's own, for tests that change the consumers."""
    with running_stream(tmp_path) as stream_:
        yield stream_


def pvhpc(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pvhpc", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_get_frame_is_a_summary_not_pixels(stream):
    prefix = stream[0]
    out = pvhpc("get", f"{prefix}:image")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "NTNDArray frame" in text
    assert re.search(r"uniqueId:\s+40\n", text)
    assert re.search(r"dimensions:\s+32 x 24 \(x, y\)", text)
    assert "uint8, 768 elements (ubyteValue)" in text
    assert re.search(r"pixels:\s+min \d+\s+max \d+\s+mean [\d.]+", text)
    assert "ColorMode = 0" in text
    assert len(text.splitlines()) < 15


def test_get_structure_and_request(stream):
    prefix = stream[0]
    out = pvhpc("get", f"{prefix}:c:1:status")
    assert out.returncode == 0, out.stderr
    assert "  consumerId: 1" in out.stdout
    assert "  processorStats:\n" in out.stdout
    assert f"    nProcessed: {FRAMES // 2}\n" in out.stdout
    out = pvhpc("get", f"{prefix}:c:2:status", "-r", "field(processorStats.nProcessed)")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[1:] == ["  processorStats:", f"    nProcessed: {FRAMES // 2}"]


def test_get_and_monitor_mistakes(stream):
    prefix = stream[0]
    out = pvhpc("get", f"{prefix}:nothing", "-t", "1")
    # Ended by itself, at its own 1 s deadline: the line only that deadline prints.
    # (How long it takes is measured in benchmarks/timings.py.)
    assert out.returncode == 1
    assert out.stderr.strip() == (
        f"pvhpc get: error: {prefix}:nothing did not answer within 1 s: check the name, and "
        "that its server runs and can be reached (EPICS_PVA_ADDR_LIST='127.0.0.1', "
        "EPICS_PVA_AUTO_ADDR_LIST='NO')"
    )
    out = pvhpc("get", f"{prefix}:image", "-r", "field(nosuchfield)")
    assert out.returncode == 2 and "request" in out.stderr and "Traceback" not in out.stderr
    out = pvhpc("monitor", f"{prefix}:nothing", "-t", "1")
    assert out.returncode == 1
    assert f"no update from {prefix}:nothing within 1 s: no server answered" in out.stderr
    assert "EPICS_PVA_ADDR_LIST='127.0.0.1'" in out.stderr


def test_monitor_prints_updates(stream):
    prefix = stream[0]
    out = pvhpc("monitor", f"{prefix}:c:1:status", "-n", "2")
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("  consumerId: 1") == 2
    out = pvhpc("monitor", f"{prefix}:image", "-n", "1")
    assert out.returncode == 0, out.stderr
    (line,) = out.stdout.splitlines()
    assert re.search(rf"{prefix}:image  uniqueId 40  32x24 uint8  min \d+", line)


def test_status_once_table(stream):
    prefix = stream[0]
    out = pvhpc("status", f"{prefix}:c:*:status", "--once", "--max-id", "4")
    assert out.returncode == 0, out.stderr
    half = FRAMES // 2
    for i in (1, 2):
        # stage, id, state, received, processed, missed, rejected, errors, overruns
        assert re.search(
            rf"{prefix}:c:{i}:status\s+{i}\s+ok\s+{half + 1}\s+{half}\s+0\s+0\s+0\s+0\s", out.stdout
        ), out.stdout
    assert f"{prefix}:c:3:status" not in out.stdout
    out = pvhpc("status", f"{prefix}:x:*:status", "--once", "--max-id", "2", "--timeout", "1")
    assert out.returncode == 1 and "no status channel answered" in out.stderr


def pty_expect(child: pexpect.spawn, pattern: str, timeout: float) -> str:
    """Wait until the terminal output, without escape sequences, matches ``pattern``."""
    chunks: list[str] = []

    def seen():
        try:
            chunks.append(child.read_nonblocking(65536, timeout=0.2))
        except pexpect.TIMEOUT:
            pass
        except pexpect.EOF:
            raise AssertionError(
                f"exited before showing {pattern!r}:\n" + ANSI.sub("", "".join(chunks))
            ) from None
        return re.search(pattern, ANSI.sub("", "".join(chunks)))

    try:
        wait_for(seen, timeout, f"the terminal to show {pattern!r}")
    except AssertionError as exc:
        screen = ANSI.sub("", "".join(chunks))[-3000:]
        raise AssertionError(f"{exc}; the terminal showed last:\n{screen}") from None
    return ANSI.sub("", "".join(chunks))


def test_status_live_view_in_a_terminal(stream):
    prefix = stream[0]
    # The terminal's size, also where the test runner set COLUMNS for its own output.
    env = dict(os.environ, NO_COLOR="1", PYTHONFAULTHANDLER="1", COLUMNS="200", LINES="30")
    child = pexpect.spawn(
        sys.executable,
        ["-m", "pvhpc", "status", f"{prefix}:c:*:status", "--max-id", "3", "--period", "0.3"],
        env=env,
        encoding="utf-8",
        dimensions=(30, 200),
    )
    try:
        half = FRAMES // 2
        rows = [
            rf"{prefix}:c:{i}:status\s+{i}\s+ok\s+{half + 1}\s+{half}\s+0\s+0\s+0\s+0\s"
            for i in (1, 2)
        ]
        text = pty_expect(child, rows[0] + r"(.|\n)*" + rows[1], 20)
        assert "p50 ms" in text and "published" in text
        child.sendintr()
        if child.expect([pexpect.EOF, pexpect.TIMEOUT], timeout=10) == 1:
            raise AssertionError(f"pvhpc status did not end on Ctrl-C:\n{_where(child)}")
    finally:
        child.close(force=True)
    assert child.exitstatus == 0


def _where(child: pexpect.spawn) -> str:
    """Where a process that does not end is stuck: its kernel state, then the Python
    stacks of all its threads (faulthandler, on SIGABRT)."""
    with open(f"/proc/{child.pid}/status") as f:
        state = next((line.strip() for line in f if line.startswith("State:")), "?")
    with open(f"/proc/{child.pid}/wchan") as f:
        wchan = f.read().strip()
    os.kill(child.pid, signal.SIGABRT)
    try:
        child.expect(pexpect.EOF, timeout=5)
    except pexpect.TIMEOUT:
        pass
    return f"{state}, wchan {wchan}\n" + ANSI.sub("", child.before or "")[-6000:]


def test_control_get_stats_and_mistakes(stream):
    prefix = stream[0]
    out = pvhpc("control", f"{prefix}:c:1:control", "get_stats")
    assert out.returncode == 0 and "Statistics published" in out.stdout
    for args, words in (
        (("configure", "{x: 1}"), "invalid JSON"),
        (("configure", "[1]"), "expected a JSON object"),
        (("configure",), "configure needs a JSON object"),
        (("bogus",), "invalid choice: 'bogus'"),
        (("stop", "now"), "stop takes no arguments"),
    ):
        out = pvhpc("control", f"{prefix}:c:1:control", *args)
        assert out.returncode == 2, (args, out)
        assert words in out.stderr and out.stderr.count("\n") == 1, out.stderr
    out = pvhpc("control", f"{prefix}:c:9:control", "get_stats", "-t", "1")
    # Ended by itself, at its own 1 s deadline (timed in benchmarks/timings.py).
    assert out.returncode == 1
    assert out.stderr.strip().startswith(
        f"pvhpc control: error: {prefix}:c:9:control did not answer within 1 s: check the name"
    )


def test_control_reset_stats(own_stream):
    prefix = own_stream[0]
    assert pv_get(f"{prefix}:c:1:status")["processorStats"]["nProcessed"] == FRAMES // 2
    out = pvhpc("control", f"{prefix}:c:1:control", "reset_stats")
    assert out.returncode == 0 and out.stdout.strip() == "Statistics reset"
    assert pv_get(f"{prefix}:c:1:status")["processorStats"]["nProcessed"] == 0
    # Only the consumer it was sent to.
    assert pv_get(f"{prefix}:c:2:status")["processorStats"]["nProcessed"] == FRAMES // 2


def test_control_configure_then_stop_ends_the_consumers(own_stream):
    prefix, _, consumers, out_dir = own_stream
    out = pvhpc("control", f"{prefix}:c:2:control", "configure", '{"x": 100}')
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == 'Configured: {"x": 100}'
    for i in (2, 1):
        out = pvhpc("control", f"{prefix}:c:{i}:control", "stop")
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() in ("Stopping", "Stopped (the control channel went away)")
        record = out_dir / f"ids-{i}.json"
        wait_for(record.exists, 20, f"consumer {i} to stop and write its record")
        assert pvhpc("get", f"{prefix}:c:{i}:status", "-t", "1").returncode == 1
    records = {i: json.loads((out_dir / f"ids-{i}.json").read_text()) for i in (1, 2)}
    assert records[2]["configured"] == [{"x": 100}]
    assert records[1]["configured"] == []
    assert sorted(records[1]["ids"] + records[2]["ids"]) == list(range(1, FRAMES + 1))
    assert consumers.wait(20) == 0
