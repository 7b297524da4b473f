"""A p4p (PVXS) server as the source of our stages, as a current areaDetector IOC is:
for a consumer, for a collector's producers and for the mirror, every frame arrives with
its pixels. A PVXS server has no distributor plugin: asking for it ends the consumer
with one clear line (status 2), and serving the source through our mirror is the fix.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from p4p_source import (
    P4pMonitor,
    P4pSource,
    image,
    p4p_context,
    publish_interleaved,
    unique_id,
)

from harness import (
    RECORDING_PROCESSOR,
    ROOT,
    accounted,
    final_reports,
    json_reports,
    pv_get,
    recorded,
    wait_accounted,
    wait_for,
)

pytestmark = pytest.mark.e2e

N_FRAMES = 40
RATE = 80.0


@pytest.fixture
def ctx():
    c = p4p_context()
    yield c
    c.close()


@pytest.fixture
def p4p_source(prefix):
    made = []

    def make(name: str = "image") -> P4pSource:
        s = P4pSource(f"{prefix}:{name}")
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def recording(tmp_path, name: str) -> list[str]:
    """Processor options: the recording processor, writing ids to ``<name>-<id>.json``."""
    return [
        "-pf",
        RECORDING_PROCESSOR,
        "-pc",
        "RecordingProcessor",
        "-pa",
        json.dumps({"outputFile": str(tmp_path / f"{name}-{{processorId}}.json")}),
    ]


def consumer(procs, prefix, tmp_path, input_channel, *extra, name="c"):
    return procs.start(
        "consumer",
        "-ic",
        input_channel,
        "-oc",
        f"{prefix}:{name}:*:output",
        "-sc",
        f"{prefix}:{name}:*:status",
        *recording(tmp_path, name),
        "-sqs",
        "200",
        "-rp",
        "0.5",
        "-rf",
        "json",
        *extra,
        name=name,
    )


def wait_receiving(procs, channel: str) -> None:
    """The stage behind this status channel got the source's current value."""
    wait_for(
        lambda: pv_get(channel)["receiverStats"]["nReceived"] >= 1,
        30,
        f"{channel} to connect",
        procs=procs,
    )


def assert_pixels(values: list, ids: list[int], where: str) -> None:
    """p4p got exactly frames ``ids`` (after the channel's initial value), each the
    source's image pixel for pixel."""
    frames = [v for v in values if unique_id(v) > 0]
    assert [unique_id(v) for v in frames] == ids, where
    for v in frames:
        expected = image(unique_id(v))
        got = np.asarray(v)
        assert got.dtype == expected.dtype and got.shape == expected.shape, where
        assert np.array_equal(got, expected), f"{where}: frame {unique_id(v)} differs"


def test_consumer_of_a_p4p_source_gets_every_frame(procs, prefix, tmp_path, ctx, p4p_source):
    src = p4p_source()
    c = consumer(procs, prefix, tmp_path, src.channel)
    status = f"{prefix}:c:1:status"
    wait_receiving(procs, status)
    out = P4pMonitor(ctx, f"{prefix}:c:1:output")
    out.wait_count(1, 20, procs)
    ids = src.publish(range(1, N_FRAMES + 1), RATE)
    wait_accounted([status], N_FRAMES, procs)
    wait_for(lambda: unique_id(out.snapshot()[-1]) == N_FRAMES, 20, "the last frame on output")

    assert c.stop() == 0
    assert recorded(str(tmp_path / "c-{processorId}.json"), 1)["ids"] == ids
    report = final_reports(c)[1]
    assert report["processorStats"]["nProcessed"] == N_FRAMES
    assert accounted(report) == N_FRAMES
    # What the consumer published from the PVXS frames, decoded by p4p: the same pixels.
    assert_pixels(out.snapshot(), ids, "consumer output")
    out.close()


def test_collector_sorts_two_p4p_producers(procs, prefix, tmp_path, ctx, p4p_source):
    sources = [p4p_source("p1"), p4p_source("p2")]
    col = procs.start(
        "collector",
        "-id",
        "1",
        "-pid",
        "1,2",
        "-ic",
        f"{prefix}:p*",
        "-oc",
        f"{prefix}:col:*:output",
        "-sc",
        f"{prefix}:col:*:status",
        *recording(tmp_path, "col"),
        "-sqs",
        "200",
        "-ccs",
        "6",
        "-rp",
        "0.5",
        "-rf",
        "json",
        name="collector",
    )
    status = f"{prefix}:col:1:status"
    wait_for(
        lambda: all(p["nReceived"] >= 1 for p in pv_get(status)["producerStats"].values()),
        30,
        "the collector to connect to both producers",
        procs=procs,
    )
    out = P4pMonitor(ctx, f"{prefix}:col:1:output")
    out.wait_count(1, 20, procs)
    # Producer 1 sends the odd ids, producer 2 the even ones, in turn.
    publish_interleaved(sources, range(1, N_FRAMES + 1), RATE)
    assert sources[0].sent == list(range(1, N_FRAMES + 1, 2))
    assert sources[1].sent == list(range(2, N_FRAMES + 1, 2))
    # The cache holds the last frames until the collector stops.
    wait_for(
        lambda: pv_get(status)["receiverStats"]["nReceived"] >= N_FRAMES + 2,
        20,
        "the collector to receive every frame",
        procs=procs,
    )
    assert col.stop() == 0
    ids = recorded(str(tmp_path / "col-{processorId}.json"), 1)["ids"]
    assert ids == list(range(1, N_FRAMES + 1))
    report = final_reports(col, "collectorId")[1]
    assert report["collectorStats"]["nCollected"] == N_FRAMES
    assert report["collectorStats"]["nRejected"] == 0
    assert report["processorStats"]["nMissed"] == 0
    for name, producer in report["producerStats"].items():
        assert producer["nReceived"] == N_FRAMES // 2 + 1, name  # and the initial value
    # Released before the stop: in order, each with its producer's pixels.
    released = [v for v in out.snapshot() if unique_id(v) > 0]
    assert len(released) >= N_FRAMES - 6
    assert_pixels(released, list(range(1, len(released) + 1)), "collector output")
    out.close()


def start_mirror(procs, dst: str, src: str):
    mirror = procs.start("mirror", "-cm", f"({dst},{src},pva,1000)", name="mirror")
    mirror.wait_for_output(r"mirroring ")
    return mirror


def test_mirror_of_a_p4p_source_serves_every_frame(procs, prefix, tmp_path, p4p_source):
    src = p4p_source()
    dst = f"{prefix}:mirror"
    mirror = start_mirror(procs, dst, src.channel)
    c = consumer(procs, prefix, tmp_path, dst)
    wait_receiving(procs, f"{prefix}:c:1:status")
    ids = src.publish(range(1, N_FRAMES + 1), RATE)
    wait_accounted([f"{prefix}:c:1:status"], N_FRAMES, procs)
    assert c.stop() == 0
    assert recorded(str(tmp_path / "c-{processorId}.json"), 1)["ids"] == ids
    report = final_reports(c)[1]
    assert report["processorStats"]["nProcessed"] == N_FRAMES
    assert accounted(report) == N_FRAMES
    assert mirror.stop() == 0


def run_consumer_command(
    args: list[str], timeout: float = 30
) -> tuple[subprocess.CompletedProcess, int]:
    """``python -m pvhpc consumer <args>`` with stdout and stderr apart; fails if it has
    not ended within ``timeout`` s. Returns the result and its process group id."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([os.path.join(ROOT, "src"), env.get("PYTHONPATH", "")])
    proc = subprocess.Popen(
        [sys.executable, "-m", "pvhpc", "consumer", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(
            f"consumer {args} still running after {timeout}s:\n{out[-2000:]}\n{err[-2000:]}"
        ) from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), proc.pid


def group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.parametrize("extra", [["-du", "1"], ["-nc", "2", "-du", "1"]], ids=["du1", "nc2-du1"])
def test_distributor_options_against_a_p4p_source_end_with_one_clear_line(
    prefix, p4p_source, extra
):
    src = p4p_source()
    result, pgid = run_consumer_command(["-ic", src.channel, "-sqs", "10", *extra])
    assert result.returncode == 2, (result.stdout[-2000:], result.stderr[-2000:])
    assert "Traceback" not in result.stderr + result.stdout
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, result.stderr
    line = errors[0]
    assert line.startswith(f"pvapy-hpc-consumer: error: the server of {src.channel} "), line
    assert "distributor" in line and "pvapy-mirror-server" in line, line
    # No child consumer is left behind.
    wait_for(lambda: group_gone(pgid), 10, "the consumer's processes to end")


def test_two_consumers_split_a_p4p_source_served_through_the_mirror(
    procs, prefix, tmp_path, p4p_source
):
    src = p4p_source()
    dst = f"{prefix}:dist"
    mirror = start_mirror(procs, dst, src.channel)
    c = consumer(procs, prefix, tmp_path, dst, "-nc", "2", "-du", "1")
    for i in (1, 2):
        wait_receiving(procs, f"{prefix}:c:{i}:status")
    src.publish(range(1, N_FRAMES + 1), RATE)
    wait_accounted([f"{prefix}:c:1:status", f"{prefix}:c:2:status"], N_FRAMES, procs)
    assert c.stop() == 0
    got = {i: recorded(str(tmp_path / "c-{processorId}.json"), i)["ids"] for i in (1, 2)}
    # Alternate frames: each consumer every other id, together every id once.
    for i, ids in got.items():
        assert ids and all(b - a == 2 for a, b in zip(ids, ids[1:])), (i, ids)
    assert sorted(got[1] + got[2]) == list(range(1, N_FRAMES + 1))
    reports = final_reports(c)
    assert sum(accounted(r) for r in reports.values()) == N_FRAMES
    assert all(r["processorStats"]["nMissed"] == 0 for r in reports.values())
    assert mirror.stop() == 0


def test_a_consumer_killed_behind_the_mirror_of_a_p4p_source_comes_back_and_every_frame_counts(
    procs, prefix, tmp_path, p4p_source
):
    """Consumer death against a source we did not write: a PVXS source, two consumers
    sharing it through our mirror's distributor, with --restart-failed. Consumer 2 is
    killed between two halves of the stream; it comes back with the same id and takes
    frames of the second half, and the set's final report puts every posted frame in
    a counter (what the dead one held counted as lost with it)."""
    src = p4p_source()
    dst = f"{prefix}:dist"
    mirror = start_mirror(procs, dst, src.channel)
    c = consumer(procs, prefix, tmp_path, dst, "-nc", "2", "-du", "1", "--restart-failed")
    statuses = [f"{prefix}:c:{i}:status" for i in (1, 2)]
    for ch in statuses:
        wait_receiving(procs, ch)
    src.publish(range(1, N_FRAMES + 1), RATE)
    wait_accounted(statuses, N_FRAMES, procs)
    old_pid = pv_get(statuses[1])["pid"]
    os.kill(old_pid, signal.SIGKILL)
    c.wait_for_output(r"consumer 2 ended unexpectedly \(killed by signal 9\); starting it", 20)
    wait_for(
        lambda: (
            (s := pv_get(statuses[1], timeout=2))["pid"] != old_pid
            and s["receiverStats"]["nReceived"] >= 1
        ),
        40,
        "consumer 2 to come back and connect to the mirror",
        procs=procs,
    )
    sent = 2 * N_FRAMES
    src.publish(range(N_FRAMES + 1, sent + 1), RATE)
    wait_for(
        lambda: max(pv_get(ch)["processorStats"]["lastObjectId"] for ch in statuses) >= sent,
        30,
        "the set to reach the end of the stream",
        procs=procs,
    )
    c.signal(signal.SIGINT)
    assert c.wait(30) == 0, c.output()[-3000:]
    sets = [r for r in json_reports(c) if r.get("kind") == "consumer-set"]
    assert sets, c.output()[-3000:]
    report = sets[-1]
    counted = sum(report[k] for k in ("processed", "missed", "rejected", "errors", "nLost"))
    assert counted == sent, report
    second = recorded(str(tmp_path / "c-{processorId}.json"), 2)["ids"]
    assert second and all(i > N_FRAMES for i in second), second
    assert "Traceback" not in c.output()
    assert mirror.stop() == 0
