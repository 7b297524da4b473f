"""Mixed pipelines, as a user migrating one stage at a time builds them: the reference's
consumers feeding pvhpc's collector, and pvhpc's consumers feeding the reference's
collector. Both must release every frame once, in id order, and count exactly.

The reference's stages connect slowly to a channel that appears after they started
(their search backs off), and the reference creates its output channel only with the
first object it receives. So every stage starts after the channel it reads exists:
the simulator first (its start delay leaves time for the rest), then the consumers,
then the collector; all are connected before the first frame.
"""

from __future__ import annotations

import json
import os
import time

import pytest
from pvapy_support import (
    REFERENCE_PASSTHROUGH,
    processor_file,
    reference_reports,
    start_reference,
)

from harness import (
    RECORDING_PROCESSOR,
    control,
    final_reports,
    pv_get,
    recorded,
    sim_frames_sent,
    sim_serving,
    wait_for,
)

pytestmark = pytest.mark.e2e

FRAMES_PER_SECOND = 50
SECONDS = 2
START_DELAY = 8
#: Seconds the reference consumers run on after the last frame.
REFERENCE_DRAIN = 5


def start_sim(procs, prefix):
    sim = procs.start(
        "sim",
        "-cn",
        f"{prefix}:image",
        "-nx",
        "32",
        "-ny",
        "32",
        "-fps",
        FRAMES_PER_SECOND,
        "-rt",
        SECONDS,
        "-std",
        START_DELAY,
        "-shd",
        "120",
        "-rf",
        "json",
        name="sim",
    )
    sim_serving(sim, 30)
    return sim


def assert_not_started(prefix, started):
    """The pipeline is connected before the simulator's first frame (frame 0 is the
    value it holds until then)."""
    assert pv_get(f"{prefix}:image")["uniqueId"] == 0, (
        f"setup took {time.monotonic() - started:.1f}s, longer than the simulator's "
        f"start delay ({START_DELAY}s): frames went out before every stage was connected"
    )


def test_reference_consumers_feed_our_collector(procs, prefix, tmp_path):
    p = prefix
    started = time.monotonic()
    sim = start_sim(procs, p)
    ref = start_reference(
        procs,
        "consumer",
        "-ic",
        f"{p}:image",
        "-oc",
        f"{p}:rc:*:output",
        "-sc",
        f"{p}:rc:*:status",
        "-cc",
        f"{p}:rc:*:control",
        "-pc",
        REFERENCE_PASSTHROUGH,
        "-nc",
        "2",
        "-du",
        "1",
        "-sqs",
        "100",
        "-rp",
        "1",
        # The reference's multi-consumer command ends at its runtime (a stop command
        # ends each consumer but not the command): until the stream is long over.
        "-rt",
        START_DELAY + SECONDS + REFERENCE_DRAIN,
        "-dc",
        name="ref-consumers",
    )
    # The reference makes its output record with the first object it receives, the
    # simulator's frame 0, and that is the record's value until frame 1: it processes
    # frame 0 without counting it. Our collector skips each producer's first update,
    # which is exactly that frame 0.
    for i in (1, 2):
        assert pv_get(f"{p}:rc:{i}:output", timeout=40)["uniqueId"] == 0
    col = procs.start(
        "collector",
        "-id",
        "1",
        "-pid",
        "1,2",
        "-ic",
        f"{p}:rc:*:output",
        "-oc",
        f"{p}:col:*:output",
        "-sc",
        f"{p}:col:*:status",
        "-cc",
        f"{p}:col:*:control",
        "-pf",
        RECORDING_PROCESSOR,
        "-pc",
        "RecordingProcessor",
        "-pa",
        json.dumps({"outputFile": str(tmp_path / "col-{processorId}.json")}),
        "-sqs",
        "100",
        "-ccs",
        "100",
        "-rp",
        "1",
        "-rf",
        "json",
        name="collector",
    )
    status = f"{p}:col:1:status"
    wait_for(
        lambda: all(v["nReceived"] >= 1 for v in pv_get(status)["producerStats"].values()),
        30,
        "the collector to connect to both reference consumers",
        procs=procs,
    )
    assert_not_started(p, started)
    sent = sim_frames_sent(sim, 60)

    wait_for(
        lambda: pv_get(status)["collectorStats"]["nCollected"] >= sent,
        30,
        f"the collector to collect {sent} frames",
        procs=procs,
    )
    assert ref.wait(60) == 0
    # What the reference says it published, from its final report.
    reports = reference_reports(ref)
    assert sorted(reports) == [1, 2]
    published = {i: r["publisherStats"]["nPublished"] for i, r in reports.items()}
    assert sum(published.values()) == sent
    assert sum(r["processorStats"]["nProcessed"] for r in reports.values()) == sent
    assert all(r["processorStats"]["nMissed"] == 0 for r in reports.values())
    assert all(r["publisherStats"]["nErrors"] == 0 for r in reports.values())
    # Ours reports what arrived until the very end, the reference's stop included.
    assert col.stop() == 0
    sim.stop()

    ids = recorded(str(tmp_path / "col-{processorId}.json"), 1)["ids"]
    assert ids == list(range(1, sent + 1))
    report = final_reports(col, "collectorId")[1]
    r, c = report["receiverStats"], report["collectorStats"]
    print({"sent": sent, "published": published, "collector": c, "receiver": r})
    assert report["processorStats"]["nProcessed"] == sent
    assert report["processorStats"]["nMissed"] == 0
    assert c["nCollected"] == sent
    assert c["nRejected"] == 0
    # Everything that arrived is accounted for: frame 0 of each producer skipped, each
    # frame collected once, and a repeat of a frame (same id, timeStamp and values;
    # the reference has published its last frame again when it stopped) rejected and
    # counted as a duplicate.
    assert r["nSkipped"] == 2
    assert r["nReceived"] == r["nSkipped"] + c["nCollected"] + c["nDuplicates"]
    assert r["nRejected"] == c["nDuplicates"]
    for i, producer in enumerate(report["producerStats"].values(), 1):
        assert producer["nSkipped"] == 1
        assert producer["nReceived"] - 1 >= published[i]


def test_our_consumers_feed_the_reference_collector(procs, prefix, tmp_path):
    p = prefix
    started = time.monotonic()
    sim = start_sim(procs, p)
    ours = procs.start(
        "consumer",
        "-ic",
        f"{p}:image",
        "-oc",
        f"{p}:c:*:output",
        "-sc",
        f"{p}:c:*:status",
        "-cc",
        f"{p}:c:*:control",
        "-nc",
        "2",
        "-du",
        "1",
        "-sqs",
        "100",
        "-rp",
        "1",
        "-rf",
        "json",
        name="consumers",
    )
    for i in (1, 2):
        wait_for(
            lambda i=i: pv_get(f"{p}:c:{i}:status")["receiverStats"]["nReceived"] >= 1,
            30,
            f"consumer {i} to connect",
            procs=procs,
        )
    ids_file = tmp_path / "ids-1.txt"
    ref = start_reference(
        procs,
        "collector",
        "-id",
        "1",
        "-pid",
        "1,2",
        "-ic",
        f"{p}:c:*:output",
        "-oc",
        f"{p}:rcol:*:output",
        "-sc",
        f"{p}:rcol:*:status",
        "-cc",
        f"{p}:rcol:*:control",
        "-pf",
        processor_file("idRecorderProcessor"),
        "-pc",
        "IdRecorderProcessor",
        "-pa",
        json.dumps({"outputFile": str(tmp_path / "ids-{processorId}.txt")}),
        "-sqs",
        "100",
        "-ccs",
        "100",
        "-rp",
        "1",
        "-dc",
        name="ref-collector",
    )
    status = f"{p}:rcol:1:status"

    def producers_connected():
        s = pv_get(status, timeout=40)
        return all(s[f"producerStats_{i}"]["receiverStats"]["nReceived"] >= 1 for i in (1, 2))

    wait_for(producers_connected, 40, "the reference collector to connect", procs=procs)
    assert_not_started(p, started)
    sent = sim_frames_sent(sim, 60)

    def recorded_ids():
        if not os.path.exists(ids_file):
            return []
        with open(ids_file) as f:
            return [int(line) for line in f.read().split()]

    wait_for(
        lambda: sent in recorded_ids(), 30, "the reference collector to release the last frame"
    )
    # Its status is published every second (-rp 1).
    final = wait_for(
        lambda: (s := pv_get(status))["processorStats"]["nProcessed"] >= sent + 1 and s,
        30,
        "the reference collector's status to show the last frame",
    )
    control(f"{p}:rcol:1:control", "stop")
    assert ref.wait(60) == 0
    assert ours.stop() == 0
    sim.stop()

    reports = final_reports(ours)
    assert sum(r["processorStats"]["nProcessed"] for r in reports.values()) == sent
    assert sum(r["publisherStats"]["nPublished"] for r in reports.values()) == sent
    assert all(r["processorStats"]["nMissed"] == 0 for r in reports.values())
    # The reference collector skips one initial update in all (-siu counts the updates
    # of every producer together), so the other producer's initial value, our output
    # record before any frame (uniqueId 0), is released first, as object 0. Then every
    # frame, once, in order.
    ids = recorded_ids()
    assert ids == [0] + list(range(1, sent + 1))
    stats = final["collectorStats"]
    assert stats["nCollected"] == sent + 2
    assert (stats["nRejected"], stats["nMissed"], stats["nCached"]) == (0, 0, 0)
    assert final["processorStats"]["nProcessed"] == sent + 1
    assert final["processorStats"]["nMissed"] == 0
