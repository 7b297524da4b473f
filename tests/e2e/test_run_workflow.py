"""`pvhpc run WORKFLOW.yaml` end to end: the real command runs small workflows written
into tmp_path (simulator -> 2 distributing consumers -> collector, and variants) and
the tests check the summary against what the stages actually received.

Each workflow streams for about two seconds at 200 fps, 32x24 frames, on channels of
its own (the ``prefix`` fixture), so that concurrent tests never share a channel.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import psutil
import pytest

from harness import RECORDING_PROCESSOR, final_reports, json_lines, pv_get, wait_for

pytestmark = pytest.mark.e2e

RATE = 200
SUMMARY_LINE = re.compile(
    r"^  (?P<mark>ok   |loss |LOST |extra|-    ) (?P<label>.+?) <- (?P<channels>.+?): "
    r"(?P<published>\d+) published = (?P<processed>\d+) processed \+ (?P<missed>\d+) missed "
    r"\+ (?P<rejected>\d+) rejected \+ (?P<errors>\d+) errors",
    re.M,
)


def workflow(
    prefix: str,
    *,
    runtime: float = 2.0,
    duration: float | None = None,
    consumer: dict | None = None,
    collector: dict | None = None,
    sim: dict | None = None,
    writer: dict | None = None,
) -> str:
    """A workflow file: sim -> 2 distributing consumers -> collector [-> writer]."""
    doc: dict = {
        "name": f"test-{prefix}",
        "network": "loopback",
        "stages": {
            "work": {
                "type": "consumer",
                "input-channel": f"{prefix}:image",
                "output-channel": f"{prefix}:c:*:output",
                "status-channel": f"{prefix}:c:*:status",
                "control-channel": f"{prefix}:c:*:control",
                "n-consumers": 2,
                "distributor-updates": 1,
                "server-queue-size": 100,
                "report-period": 0.5,
                **(consumer or {}),
            },
            "collect": {
                "type": "collector",
                "producer-id-list": [1, 2],
                "input-channel": f"{prefix}:c:*:output",
                "output-channel": f"{prefix}:k:*:output",
                "status-channel": f"{prefix}:k:*:status",
                "control-channel": f"{prefix}:k:*:control",
                "server-queue-size": 100,
                "collector-cache-size": 10,
                "report-period": 0.5,
                **(collector or {}),
            },
            "sim": {
                "type": "sim",
                "channel-name": f"{prefix}:image",
                "n-x-pixels": 32,
                "n-y-pixels": 24,
                "frame-rate": RATE,
                "runtime": runtime,
                "start-delay": 1,
                **(sim or {}),
            },
        },
    }
    if writer is not None:
        doc["stages"]["write"] = {
            "type": "consumer",
            "input-channel": f"{prefix}:k:1:output",
            "status-channel": f"{prefix}:w:*:status",
            "control-channel": f"{prefix}:w:*:control",
            "server-queue-size": 1000,
            "receiver-queue-size": 1000,
            "report-period": 0.5,
            **writer,
        }
    if duration is not None:
        doc["duration"] = duration
    # JSON is YAML: the file the runner reads is exactly this structure.
    return json.dumps(doc, indent=2)


def write_workflow(tmp_path, text: str) -> str:
    path = tmp_path / "wf.yaml"
    path.write_text(text)
    return str(path)


def run_command(path: str, log_dir, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pvhpc",
        "run",
        path,
        "--log-dir",
        str(log_dir),
        "--quiet-time",
        "2",
        *args,
    ]


def run(tmp_path, text: str, *args: str, timeout: float = 90) -> tuple[int, str]:
    """Run ``pvhpc run`` to its end; return (exit status, stdout + stderr)."""
    path = write_workflow(tmp_path, text)
    done = subprocess.run(
        run_command(path, tmp_path / "logs", "--view", "none", *args),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    return done.returncode, done.stdout + done.stderr


def loss_lines(out: str) -> dict[str, dict]:
    """The summary's loss-check lines by set label."""
    found = {}
    for m in SUMMARY_LINE.finditer(out):
        d = m.groupdict()
        found[d["label"]] = {
            k: (int(v) if v.isdigit() else v.strip()) for k, v in d.items() if k != "label"
        }
    return found


def frames_sent(log_dir) -> int:
    """The simulator's count from its final JSON report (``pvhpc run`` starts it
    with ``--report-format json``)."""
    with open(os.path.join(log_dir, "sim.out")) as f:
        finals = [r for r in json_lines(f.read()) if r.get("event") == "report" and r["final"]]
    assert finals, "the simulator did not print its final count"
    return int(finals[-1]["nSent"])


def recorded_ids(path: str) -> list[int]:
    with open(path) as f:
        return json.load(f)["ids"]


def stage_reports(log_dir, stage: str, id_name: str = "consumerId") -> dict[int, dict]:
    class _Out:
        def output(self):
            with open(os.path.join(log_dir, f"{stage}.out")) as f:
                return f.read()

    return final_reports(_Out(), id_name)  # type: ignore[arg-type]


def no_process_left(pids: list[psutil.Process]) -> list[str]:
    left = []
    for p in pids:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                left.append(f"{p.pid} {' '.join(p.cmdline())}")
        except psutil.NoSuchProcess:
            continue
    return left


def recording(tmp_path, name: str) -> dict:
    return {
        "processor-file": RECORDING_PROCESSOR,
        "processor-class": "RecordingProcessor",
        "processor-args": {"outputFile": str(tmp_path / f"{name}-{{processorId}}.json")},
    }


def assert_every_frame_arrived(out: str, sent: int) -> None:
    """Both consumer sets of the workflow processed all ``sent`` frames, nothing
    missed, rejected or failed, and the RESULT line says so (without "lost")."""
    lines = loss_lines(out)
    assert set(lines) == {"work (distributor)", "collect 1"}, out
    for label, line in lines.items():
        assert line["mark"] == "ok", (label, out)
        assert line["published"] == line["processed"] == sent, (label, out)
        assert line["missed"] == line["rejected"] == line["errors"] == 0, (label, out)
    assert re.search(r"^RESULT: ok, every frame is accounted for$", out, re.M), out


def test_finite_source_ends_the_run_when_the_stream_has_drained(tmp_path, prefix):
    text = workflow(
        prefix,
        consumer=recording(tmp_path, "work"),
        collector=recording(tmp_path, "collect"),
    )
    status, out = run(tmp_path, text)
    assert status == 0, out
    sent = frames_sent(tmp_path / "logs")
    assert sent >= RATE  # about two seconds of frames went out
    # It ended by itself because the stream had drained: not at its --drain-timeout,
    # nor after its counts stopped changing, nor killed by run()'s timeout. (How soon
    # after the source it ends is measured in benchmarks/timings.py.)
    assert "stopped: the source finished and every frame arrived" in out
    assert_every_frame_arrived(out, sent)
    assert f"work (distributor) <- {prefix}:image: {sent} published = {sent} processed" in out
    # What the processors saw: the consumers shared the frames, each exactly once,
    # and the collector put them all back in order.
    ids1 = recorded_ids(str(tmp_path / "work-1.json"))
    ids2 = recorded_ids(str(tmp_path / "work-2.json"))
    assert ids1 and ids2
    assert sorted(ids1 + ids2) == list(range(1, sent + 1))
    assert recorded_ids(str(tmp_path / "collect-1.json")) == list(range(1, sent + 1))


def test_duration_stops_an_endless_source(tmp_path, prefix):
    status, out = run(tmp_path, workflow(prefix, runtime=0, duration=2))
    assert status == 0, out
    assert "stopped: duration of 2 s reached" in out
    sent = frames_sent(tmp_path / "logs")
    assert sent >= RATE // 4, out  # it was streaming when the duration ran out
    # Stopped mid-stream, yet nothing stays in flight: the source stops first and
    # keeps its channel up for a moment so that what it published arrives (the
    # consumers have server queues), then each stage drains before the next stops.
    assert_every_frame_arrived(out, sent)


def test_ctrl_c_stops_every_stage_cleanly(tmp_path, prefix):
    path = write_workflow(tmp_path, workflow(prefix, runtime=0))
    log_dir = tmp_path / "logs"
    with open(tmp_path / "run.out", "wb") as sink:
        runner = subprocess.Popen(
            run_command(path, log_dir, "--view", "plain", "--print-period", "1"),
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:

        def collected() -> bool:
            if runner.poll() is not None:
                raise AssertionError(f"pvhpc run exited early ({runner.returncode})")
            shown = re.search(rf"test-{prefix}  \d+ s", (tmp_path / "run.out").read_text())
            n = pv_get(f"{prefix}:k:1:status")["processorStats"]["nProcessed"]
            return bool(shown) and n >= RATE // 2

        # Mid-stream, once the plain view has printed a table.
        wait_for(collected, 60, "the collector to process frames and a table")
        stages = psutil.Process(runner.pid).children(recursive=True)
        # sim, collector, consumer parent and its two consumer processes
        assert len(stages) >= 5, [p.cmdline() for p in stages]
        runner.send_signal(signal.SIGINT)
        status = runner.wait(60)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait(10)
    out = (tmp_path / "run.out").read_text()
    assert status == 0, out
    assert "stopped: Ctrl-C" in out
    assert no_process_left(stages) == [], out
    # Every stage stopped on its own terms and said its final numbers.
    assert "no final numbers" not in out
    for stage, id_name, ids in (
        ("work", "consumerId", {1, 2}),
        ("collect", "collectorId", {1}),
    ):
        assert set(stage_reports(log_dir, stage, id_name)) == ids, out
    assert "failed" not in out.split("final numbers", 1)[1], out
    sent = frames_sent(log_dir)
    # Ctrl-C stops the stages upstream first, each draining: every frame the source
    # published arrives (as with a duration).
    assert_every_frame_arrived(out, sent)


FAILING_START = """\
from pvhpc import UserDataProcessor


class FailingStart(UserDataProcessor):
    def start(self):
        raise RuntimeError("calibration file /nonexistent/calib.h5 not found")
"""


@pytest.mark.parametrize("where", ["collector start()", "simulator input file"])
def test_a_stage_failing_to_start_ends_the_run_naming_it(tmp_path, prefix, where):
    if where == "collector start()":
        (tmp_path / "failing.py").write_text(FAILING_START)
        text = workflow(
            prefix, collector={"processor-file": "failing.py", "processor-class": "FailingStart"}
        )
        stage, code, cause = "collect", 1, "processor start() failed: RuntimeError: calibration"
    else:
        # The file exists, so the workflow check passes; the simulator refuses it.
        (tmp_path / "frames.npy").write_bytes(b"not a numpy file")
        text = workflow(prefix, sim={"input-file": "frames.npy"})
        stage, code, cause = "sim", 2, "--input-file"
    status, out = run(tmp_path, text)
    assert status == 1, out
    assert f"stage {stage!r} exited (status {code}) while starting" in out
    assert cause in out
    assert "stopped: a stage failed to start" in out
    assert f"RESULT: stage(s) failed: {stage} (exit status {code})" in out
    assert "RESULT: ok" not in out
    assert "Traceback" not in out


def test_output_file_writer_writes_one_file_per_processed_frame(tmp_path, prefix):
    files = tmp_path / "frames"
    text = workflow(
        prefix,
        runtime=1.0,
        writer={
            "processor-class": "pvhpc.processors.AdOutputFileProcessor",
            "processor-args": {
                "outputDirectory": str(files),
                "outputFileNameFormat": "f_{uniqueId:06d}.tiff",
            },
        },
    )
    status, out = run(tmp_path, text)
    assert status == 0, out
    sent = frames_sent(tmp_path / "logs")
    line = loss_lines(out)["write 1"]
    assert line["mark"] == "ok", out
    assert line["processed"] == sent, out
    written = sorted(os.listdir(files))
    assert len(written) == line["processed"]
    assert written == [f"f_{i:06d}.tiff" for i in range(1, sent + 1)]
    from PIL import Image

    with Image.open(files / written[-1]) as img:
        assert img.size == (32, 24)


@pytest.mark.parametrize("group", ["same", "other"])
def test_a_foreign_distributor_client_is_a_warning_not_ok(procs, tmp_path, prefix, group):
    """A consumer started by hand on the workflow's source channel, in the distributor
    group the workflow uses, takes every third frame: the workflow's consumers then
    count the frames they never saw as missed, more frames than were published. In a
    group of its own it gets the whole stream and disturbs nothing."""
    extra = ["-dg", "foreign"] if group == "other" else []
    foreign = procs.start(
        "consumer",
        "-ic",
        f"{prefix}:image",
        "-du",
        "1",
        # A server queue, as the seed gives sustained streams: without one, a stall of
        # a loaded machine overruns its monitor (4 of 400 frames counted missed once).
        "-sqs",
        "100",
        *extra,
        "-sc",
        f"{prefix}:foreign:status",
        "-rp",
        "0.5",
        "--report-format",
        "json",
        name="foreign",
    )
    wait_for(lambda: pv_get(f"{prefix}:foreign:status"), 30, "the foreign consumer", procs=procs)
    status, out = run(tmp_path, workflow(prefix, sim={"start-delay": 2}))
    sent = frames_sent(tmp_path / "logs")
    assert foreign.stop() == 0
    theirs = final_reports(foreign)[1]["processorStats"]["nProcessed"]
    lines = loss_lines(out)
    ours = lines["work (distributor)"]["processed"]
    if group == "other":
        assert status == 0, out
        assert theirs == sent and ours == sent, out
        assert "WARNING" not in out
        assert "RESULT: ok, every frame is accounted for" in out
        return
    assert status == 3, out
    # Between them, the three clients processed every frame exactly once.
    assert theirs > 0 and ours + theirs == sent, (theirs, out)
    assert lines["work (distributor)"]["mark"] == "extra", out
    warnings = [line for line in out.splitlines() if line.startswith("WARNING:")]
    assert len(warnings) == 2, out
    work, collect = warnings
    assert f"work (distributor) <- {prefix}:image accounts for" in work
    assert "another client reads" in work and "distributor-group" in work
    assert "collect 1" in collect and "follows from the over-counting of work" in collect
    assert "RESULT: every frame is accounted for, with warnings" in out
    assert "RESULT: ok" not in out
