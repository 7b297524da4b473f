"""The seed's collector scenarios end to end: distributing consumers feed a
collector that must release every frame in id order; tiles split by one consumer
and spread over four are stitched back bit for bit; metadata reaches the processor."""

from __future__ import annotations

import json
import os
import threading

import numpy as np
import pvaccess as pva
import pytest

from harness import (
    EXAMPLES,
    RECORDING_PROCESSOR,
    control,
    final_reports,
    pv_get,
    recorded,
    wait_accounted,
    wait_for,
)
from pvhpc.processors.ad_image import get_image

pytestmark = pytest.mark.e2e


def start_sim(procs, prefix, frames, fps, *extra):
    return procs.start(
        "sim",
        "-cn",
        f"{prefix}:image",
        "-fps",
        fps,
        "-rt",
        frames / fps,
        "-std",
        "4",
        "-shd",
        "120",
        *extra,
        name="sim",
    )


def wait_received(procs, channel, field="receiverStats", key="nReceived"):
    wait_for(lambda: pv_get(channel)[field][key] >= 1, 30, f"{channel} to connect", procs=procs)


def collector(procs, prefix, tmp_path, producers, input_channel, *extra, processor=None):
    proc_args = processor or (
        "-pf",
        RECORDING_PROCESSOR,
        "-pc",
        "RecordingProcessor",
        "-pa",
        json.dumps({"outputFile": str(tmp_path / "col-{processorId}.json")}),
    )
    return procs.start(
        "collector",
        "-id",
        "1",
        "-pid",
        producers,
        "-ic",
        input_channel,
        "-oc",
        f"{prefix}:col:*:output",
        "-sc",
        f"{prefix}:col:*:status",
        "-cc",
        f"{prefix}:col:*:control",
        *proc_args,
        "-rp",
        "0.5",
        "-rf",
        "json",
        *extra,
        name="collector",
    )


def test_data_collector_releases_every_frame_in_order(procs, prefix, tmp_path):
    consumers = procs.start(
        "consumer",
        "-ic",
        f"{prefix}:image",
        "-oc",
        f"{prefix}:proc:*:output",
        "-sc",
        f"{prefix}:proc:*:status",
        "-pf",
        os.path.join(EXAMPLES, "hpcAdImageProcessorExample.py"),
        "-pc",
        "HpcAdImageProcessor",
        "-sqs",
        "100",
        "-rqs",
        "1000",
        "-nc",
        "4",
        "-du",
        "8",
        "-rp",
        "0.5",
        "-rf",
        "json",
        name="consumers",
    )
    col = collector(
        procs,
        prefix,
        tmp_path,
        "1,2,3,4",
        f"{prefix}:proc:*:output",
        "-sqs",
        "1000",
        "-ccs",
        "100",
        "-rqs",
        "2000",
    )
    sim = start_sim(procs, prefix, 480, 120, "-nx", "32", "-ny", "32")
    for i in (1, 2, 3, 4):
        wait_received(procs, f"{prefix}:proc:{i}:status")
    wait_for(
        lambda: all(
            v["nReceived"] >= 1 for v in pv_get(f"{prefix}:col:1:status")["producerStats"].values()
        ),
        30,
        "collector to connect to all producers",
        procs=procs,
    )
    # The cache size can change while data flows.
    answer = control(f"{prefix}:col:1:control", "configure", '{"collectorCacheSize": 50}')
    assert "collectorCacheSize=50" in answer
    control(f"{prefix}:col:1:control", "get_stats")
    assert pv_get(f"{prefix}:col:1:status")["collectorStats"]["cacheSize"] == 50
    sent = int(sim.wait_for_output(r"done, sent (\d+) frames", 60).group(1))
    wait_accounted([f"{prefix}:col:1:status"], sent, procs)
    assert col.stop() == 0
    assert consumers.stop() == 0
    sim.stop()
    ids = recorded(str(tmp_path / "col-{processorId}.json"), 1)["ids"]
    inversions = [(a, b) for a, b in zip(ids, ids[1:]) if b <= a]
    assert inversions == []
    assert ids == list(range(1, sent + 1))
    report = final_reports(col, "collectorId")[1]
    assert report["processorStats"]["nMissed"] == 0
    assert report["collectorStats"]["nRejected"] == 0
    assert report["collectorStats"]["nCollected"] == sent


def test_split_and_stitch_gives_back_the_original_frames(procs, prefix, tmp_path):
    rng = np.random.default_rng(7)
    frames = rng.integers(0, 65535, size=(5, 48, 64), dtype=np.uint16)
    source = tmp_path / "frames.npy"
    np.save(source, frames)
    procs.start(
        "consumer",
        "-ic",
        f"{prefix}:image",
        "-oc",
        f"{prefix}:split:*:output",
        "-sc",
        f"{prefix}:split:*:status",
        "-sqs",
        "100",
        "-pf",
        os.path.join(EXAMPLES, "splitAdImageProcessorExample.py"),
        "-pc",
        "SplitAdImageProcessor",
        "-pa",
        '{"nx": 32, "ny": 24}',
        "-rp",
        "0.5",
        name="split",
    )
    procs.start(
        "consumer",
        "-ic",
        f"{prefix}:split:1:output",
        "-oc",
        f"{prefix}:tile:*:output",
        "-sc",
        f"{prefix}:tile:*:status",
        "-sqs",
        "100",
        "-nc",
        "4",
        "-du",
        "1",
        "-rp",
        "0.5",
        name="tiles",
    )
    col = collector(
        procs,
        prefix,
        tmp_path,
        "1,2,3,4",
        f"{prefix}:tile:*:output",
        "-sqs",
        "100",
        "-ccs",
        "100",
        processor=(
            "-pf",
            os.path.join(EXAMPLES, "stitchAdImageProcessorExample.py"),
            "-pc",
            "StitchAdImageProcessor",
            "-pa",
            '{"nx": 64, "ny": 48}',
        ),
    )
    stitched = {}
    lock = threading.Lock()

    def on_frame(pv):
        with lock:
            stitched[pv["uniqueId"]] = np.array(get_image(pv))

    out = pva.Channel(f"{prefix}:col:1:output")
    out.monitor(on_frame, "record[queueSize=100]field()")
    sim = start_sim(procs, prefix, 40, 20, "-if", str(source), "-nf", "5")
    wait_received(procs, f"{prefix}:split:1:status")
    for i in (1, 2, 3, 4):
        wait_received(procs, f"{prefix}:tile:{i}:status")
    sent = int(sim.wait_for_output(r"done, sent (\d+) frames", 60).group(1))
    wait_for(
        lambda: len([k for k in stitched if k > 0]) >= sent,
        30,
        f"{sent} stitched frames",
        procs=procs,
    )
    out.stopMonitor()
    assert col.stop() == 0
    mismatched = [
        k
        for k in range(1, sent + 1)
        if not np.array_equal(stitched[k], frames[(k - 1) % len(frames)])
    ]
    assert mismatched == []
    assert all(stitched[k].dtype == np.uint16 for k in range(1, sent + 1))


@pytest.mark.parametrize("protocol", ["pva", "ca"])
def test_metadata_reaches_the_collectors_processor(procs, prefix, tmp_path, protocol):
    names = [f"{prefix}x", f"{prefix}y", f"{prefix}z"]
    mpv = ",".join(f"{protocol}://{n}" for n in names)
    col = collector(
        procs,
        prefix,
        tmp_path,
        "1",
        f"{prefix}:image",
        "-sqs",
        "100",
        "-ccs",
        "100",
        "-rqs",
        "1000",
        "-mc",
        mpv,
        processor=(
            "-pf",
            os.path.join(EXAMPLES, "hpcAdMetadataProcessorExample.py"),
            "-pc",
            "HpcAdMetadataProcessor",
        ),
    )
    sim = start_sim(procs, prefix, 100, 50, "-nx", "32", "-ny", "32", "-mpv", mpv)
    status = f"{prefix}:col:1:status"
    wait_received(procs, status)
    sent = int(sim.wait_for_output(r"done, sent (\d+) frames", 60).group(1))
    wait_accounted([status], sent, procs)
    assert col.stop() == 0
    # The numbers after stop, from the collector's final report: nothing is still on
    # its way, so every frame must have found all three values with its own timestamp.
    report = final_reports(col, "collectorId")[1]
    assert report["processorStats"]["nProcessed"] == sent
    meta = report["metadataStats"]
    assert len(meta) == 3 and all(m["nReceived"] >= sent for m in meta.values()), meta
    user = report["userStats"]
    assert user["nFramesWithFullMetadata"] == sent, user
    assert user["nFramesWithMissingMetadata"] == 0, user
    assert user["nMetadataMatched"] == 3 * sent, user
