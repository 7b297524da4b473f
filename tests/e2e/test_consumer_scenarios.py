"""The seed's consumer scenarios, end to end on loopback: real simulator, real
consumer processes, assertions on the ids each consumer processed and on the loss
invariant of SPEC §5 (published = processed + missed + rejected + errors)."""

from __future__ import annotations

import pytest

from harness import (
    accounted,
    control,
    final_reports,
    pv_get,
    recorded,
    recording_consumer,
    wait_accounted,
    wait_for,
)

pytestmark = pytest.mark.e2e


def consumer(procs, prefix, tmp_path, *extra, name="consumers", processor_args=None):
    """The recording consumer (ids in ``tmp_path/c-ids-<id>.json``), JSON reports."""
    return recording_consumer(
        procs, prefix, tmp_path, *extra, name=name, processor_args=processor_args
    )


def simulator(procs, prefix, frames, fps, *extra, size=32):
    """Start the simulator; it waits 3 s before its first frame so consumers connect,
    and keeps serving afterwards until the test stops it."""
    return procs.start(
        "sim",
        "-cn",
        f"{prefix}:image",
        "-nx",
        size,
        "-ny",
        size,
        "-dt",
        "uint8",
        "-fps",
        fps,
        "-rt",
        frames / fps,
        "-std",
        "3",
        "-shd",
        "120",
        *extra,
        name="sim",
    )


def wait_connected(procs, prefix, ids):
    """Each consumer has received the source's initial value: it is connected."""
    for i in ids:
        wait_for(
            lambda i=i: pv_get(f"{prefix}:c:{i}:status")["receiverStats"]["nReceived"] >= 1,
            20,
            f"consumer {i} to connect",
            procs=procs,
        )


def run_stream(procs, prefix, consumers, ids, frames, fps, copies=1, size=32):
    """Stream ``frames`` frames; wait until the consumers have accounted for all of them
    (``copies`` times: once per consumer that sees the whole stream, or per set), then
    stop everything and return the frames sent and the consumers' final reports."""
    sim = simulator(procs, prefix, frames, fps, size=size)
    wait_connected(procs, prefix, ids)
    sent = int(sim.wait_for_output(r"done, sent (\d+) frames", frames / fps + 30).group(1))

    wait_accounted([f"{prefix}:c:{i}:status" for i in ids], copies * sent, procs)
    for c in consumers:
        assert c.stop() == 0, c.output()[-2000:]
    sim.stop()
    reports = {}
    for c in consumers:
        reports.update(final_reports(c))
    assert sorted(reports) == sorted(ids), f"final reports of {sorted(reports)}, not {ids}"
    assert sum(accounted(r) for r in reports.values()) == copies * sent
    return sent, reports


def test_single_consumer_processes_every_frame(procs, prefix, tmp_path):
    c = consumer(procs, prefix, tmp_path, "-sqs", "100")
    sent, reports = run_stream(procs, prefix, [c], [1], 60, 30)
    ids = recorded(str(tmp_path / "c-ids-{processorId}.json"), 1)["ids"]
    assert ids == list(range(1, sent + 1))
    r = reports[1]
    assert r["processorStats"]["nProcessed"] == sent
    assert r["processorStats"]["nMissed"] == 0
    assert accounted(r) == sent
    assert r["publisherStats"]["nPublished"] == sent
    assert r["processorStats"]["firstObjectId"] == 1
    assert r["processorStats"]["lastObjectId"] == sent


def test_status_and_control_while_data_flows(procs, prefix, tmp_path):
    c = consumer(procs, prefix, tmp_path)
    sim = simulator(procs, prefix, 400, 40)
    wait_connected(procs, prefix, [1])
    status = f"{prefix}:c:1:status"
    ctl = f"{prefix}:c:1:control"
    wait_for(
        lambda: pv_get(status)["processorStats"]["nProcessed"] >= 10,
        30,
        "frames to flow",
        procs=procs,
    )
    st = pv_get(status)
    assert st["consumerId"] == 1
    assert st["inputChannel"] == f"{prefix}:image"
    assert {"receiverStats", "queueStats", "processorStats", "publisherStats", "userStats"} <= set(
        st.keys()
    )

    msg = control(ctl, "configure", '{"x": 100}')
    assert "Configured" in msg
    control(ctl, "get_stats")
    wait_for(lambda: pv_get(status)["userStats"]["x"] == 100, 10, "x=100 in userStats")

    before = pv_get(status)["processorStats"]
    assert "reset" in control(ctl, "reset_stats").lower()
    after = pv_get(status)["processorStats"]
    # Counting starts again: only frames newer than those counted before the reset
    # are counted (frames go on arriving meanwhile, 40 a second).
    assert after["nProcessed"] < before["nProcessed"]
    newer = max(0, after["lastObjectId"] - before["lastObjectId"])  # last is -1 if none
    assert after["nProcessed"] <= newer, (before, after)

    assert "Unknown command" in control(ctl, "reboot")
    assert "not valid JSON" in control(ctl, "configure", "{x:")

    # The output channel carries the processed frames.
    out = pv_get(f"{prefix}:c:1:output")
    assert out["uniqueId"] > 0

    assert "Stopping" in control(ctl, "stop")
    assert c.wait(20) == 0
    data = recorded(str(tmp_path / "c-ids-{processorId}.json"), 1)
    assert data["stopped"] is True
    assert {"x": 100} in data["configured"]
    sim.stop()


def test_multiple_consumers_each_get_every_frame(procs, prefix, tmp_path):
    c = consumer(procs, prefix, tmp_path, "-nc", "2", "-sqs", "100")
    sent, reports = run_stream(procs, prefix, [c], [1, 2], 40, 20, copies=2)
    for i in (1, 2):
        assert recorded(str(tmp_path / "c-ids-{processorId}.json"), i)["ids"] == list(
            range(1, sent + 1)
        )
        assert accounted(reports[i]) == sent


def test_distribution_alternates_between_two_consumers(procs, prefix, tmp_path):
    c = consumer(procs, prefix, tmp_path, "-nc", "2", "-du", "1", "-sqs", "100")
    sent, reports = run_stream(procs, prefix, [c], [1, 2], 60, 30)
    a = recorded(str(tmp_path / "c-ids-{processorId}.json"), 1)["ids"]
    b = recorded(str(tmp_path / "c-ids-{processorId}.json"), 2)["ids"]
    assert sorted(a + b) == list(range(1, sent + 1))
    for ids in (a, b):
        assert all(y - x == 2 for x, y in zip(ids, ids[1:])), ids
    assert {a[0], b[0]} == {1, 2}
    assert sum(accounted(r) for r in reports.values()) == sent
    assert all(r["processorStats"]["nMissed"] == 0 for r in reports.values())


def test_two_consumer_sets_split_in_runs_of_three(procs, prefix, tmp_path):
    common = ("-nc", "2", "-du", "3", "-nds", "2", "-sqs", "100")
    set_a = consumer(procs, prefix, tmp_path, *common, "-id", "1", "-ds", "A", name="setA")
    set_b = consumer(procs, prefix, tmp_path, *common, "-id", "3", "-ds", "B", name="setB")
    sent, reports = run_stream(procs, prefix, [set_a, set_b], [1, 2, 3, 4], 60, 30, copies=2)
    got = {i: recorded(str(tmp_path / "c-ids-{processorId}.json"), i)["ids"] for i in (1, 2, 3, 4)}
    # Consumers of one set see the same frames; the two sets split the stream in runs of 3.
    assert got[1] == got[2] and got[3] == got[4]
    assert sorted(got[1] + got[3]) == list(range(1, sent + 1))
    runs = {((i - 1) // 3) % 2 for i in got[1]}
    assert len(runs) == 1 and {((i - 1) // 3) % 2 for i in got[3]} == {1 - runs.pop()}
    for i in (1, 2, 3, 4):
        assert reports[i]["processorStats"]["nMissed"] == 0
    # Per set: published = processed + missed + rejected + errors
    assert accounted(reports[1]) + accounted(reports[3]) == sent


def test_slow_consumer_without_queues_loses_frames_visibly(procs, prefix, tmp_path):
    c = consumer(procs, prefix, tmp_path, processor_args={"delay": 0.004})
    # 256x256 frames: too big for socket buffers to hide a slow consumer
    sent, reports = run_stream(procs, prefix, [c], [1], 1200, 800, size=256)
    r = reports[1]
    assert r["processorStats"]["nMissed"] > 0
    assert accounted(r) == sent


def test_server_queue_protects_a_slow_consumer(procs, prefix, tmp_path):
    c = consumer(procs, prefix, tmp_path, "-sqs", "2000", processor_args={"delay": 0.0015})
    sent, reports = run_stream(procs, prefix, [c], [1], 1200, 800, size=256)
    r = reports[1]
    assert r["receiverStats"]["nOverruns"] == 0
    assert r["processorStats"]["nMissed"] == 0
    assert r["processorStats"]["nProcessed"] == sent


def test_receiver_queue_rejects_are_counted_not_missed(procs, prefix, tmp_path):
    # The server queue absorbs scheduling hiccups of a loaded machine; the receiver
    # queue in front of the slow processor is what rejects.
    c = consumer(
        procs, prefix, tmp_path, "-sqs", "1000", "-rqs", "100", processor_args={"delay": 0.004}
    )
    sent, reports = run_stream(procs, prefix, [c], [1], 1200, 800, size=256)
    r = reports[1]
    assert r["receiverStats"]["nRejected"] > 0
    assert r["queueStats"]["nRejected"] == r["receiverStats"]["nRejected"]
    assert r["processorStats"]["nMissed"] == 0
    assert r["receiverStats"]["nOverruns"] == 0
    assert accounted(r) == sent


def test_distribution_with_receiver_queues_keeps_up(procs, prefix, tmp_path):
    c = consumer(
        procs,
        prefix,
        tmp_path,
        "-sqs",
        "100",
        "-rqs",
        "1000",
        "-nc",
        "2",
        "-du",
        "1",
        processor_args={"delay": 0.001},
    )
    sent, reports = run_stream(procs, prefix, [c], [1, 2], 1200, 800)
    for r in reports.values():
        assert r["receiverStats"]["nRejected"] == 0
        assert r["processorStats"]["nMissed"] == 0
    assert sum(r["processorStats"]["nProcessed"] for r in reports.values()) == sent


def test_processor_errors_are_counted_and_the_stream_goes_on(procs, prefix, tmp_path):
    c = consumer(procs, prefix, tmp_path, "-sqs", "100", processor_args={"failOnIds": [3, 7]})
    sent, reports = run_stream(procs, prefix, [c], [1], 30, 30)
    r = reports[1]
    assert r["processorStats"]["nErrors"] == 2
    assert r["processorStats"]["nProcessed"] == sent - 2
    assert accounted(r) == sent


def test_accumulated_batches_hold_each_frames_own_data(procs, prefix, tmp_path):
    # pvaccess reuses the monitor's object for the next update; queued objects must be
    # copies, or a batch of 10 would be ten times the latest frame.
    c = consumer(procs, prefix, tmp_path, "-rqs", "0", "-ao", "10", "-sqs", "100")
    sent, reports = run_stream(procs, prefix, [c], [1], 200, 100)
    ids = recorded(str(tmp_path / "c-ids-{processorId}.json"), 1)["ids"]
    assert ids == list(range(1, sent + 1))
