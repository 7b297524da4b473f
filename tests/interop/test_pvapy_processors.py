"""Processors written against the reference's user API (pvapy_processors/) run
unchanged in a pvhpc consumer and publish correct results: a moving average over the
last frames (derived pixels, extra fields of the declared output type), and a
metadata associator fed by ``metadataQueueMap`` (the simulator's metadata values are
the frame ids, stamped with the frame's timestamp)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pvapy_support import FrameRecorder, processor_file

from harness import final_reports, pv_get, sim_frames_sent, wait_for

pytestmark = pytest.mark.e2e


def consumer(procs, prefix, processor, cls, *extra):
    return procs.start(
        "consumer",
        "-ic",
        f"{prefix}:image",
        "-oc",
        f"{prefix}:c:*:output",
        "-sc",
        f"{prefix}:c:*:status",
        "-cc",
        f"{prefix}:c:*:control",
        "-pf",
        processor_file(processor),
        "-pc",
        cls,
        "-sqs",
        "100",
        "-rp",
        "1",
        "-rf",
        "json",
        *extra,
        name="consumer",
    )


def simulate(procs, prefix, frames_per_second, seconds, *extra):
    """Start the simulator; the consumer connects during its start delay (frame 0)."""
    sim = procs.start(
        "sim",
        "-cn",
        f"{prefix}:image",
        "-fps",
        frames_per_second,
        "-rt",
        seconds,
        "-std",
        "3",
        "-shd",
        "120",
        *extra,
        "-rf",
        "json",
        name="sim",
    )
    status = f"{prefix}:c:1:status"
    wait_for(
        lambda: pv_get(status)["receiverStats"]["nReceived"] >= 1,
        30,
        "the consumer to connect",
        procs=procs,
    )
    return sim


def recorder(procs, prefix, fields=()):
    out = FrameRecorder(f"{prefix}:c:1:output", fields)
    wait_for(lambda: out.ids, 20, "the consumer's output (its current value)", procs=procs)
    return out


def test_moving_average_runs_unchanged(procs, prefix, tmp_path):
    window = 3
    rng = np.random.default_rng(21)
    frames = rng.integers(0, 65536, size=(5, 24, 32), dtype=np.uint16)
    np.save(tmp_path / "frames.npy", frames)
    proc = consumer(
        procs,
        prefix,
        "movingAverageProcessor",
        "MovingAverageProcessor",
        "-pa",
        json.dumps({"nFrames": window}),
    )
    out = recorder(procs, prefix, ("nAveraged", "firstFrameId"))
    sim = simulate(procs, prefix, 20, 2, "-if", tmp_path / "frames.npy", "-nf", "5")
    sent = sim_frames_sent(sim, 60)
    wait_for(lambda: out.count() >= sent, 30, f"{sent} averaged frames", procs=procs)
    assert proc.stop() == 0
    out.close()

    report = final_reports(proc)[1]
    assert report["processorStats"]["nProcessed"] == sent
    assert report["processorStats"]["nMissed"] == 0
    assert report["processorStats"]["nErrors"] == 0
    assert report["userStats"]["nFramesAveraged"] == sent
    assert report["publisherStats"]["nPublished"] == sent
    assert report["publisherStats"]["nConverted"] == 0
    assert [k for k in out.ids if k > 0] == list(range(1, sent + 1))
    wrong = []
    for k in range(1, sent + 1):
        first = max(1, k - window + 1)
        stack = [frames[(j - 1) % len(frames)].astype(np.int64) for j in range(first, k + 1)]
        expected = np.sum(stack, axis=0) / len(stack)
        got = out.images[k]
        if (
            got.dtype != np.float64
            or not np.array_equal(got, expected)
            or out.fields[k] != {"nAveraged": len(stack), "firstFrameId": first}
        ):
            wrong.append(k)
    assert wrong == []


def test_metadata_associator_runs_unchanged(procs, prefix):
    names = [f"{prefix}:x", f"{prefix}:y", f"{prefix}:z"]
    channels = ",".join(f"pva://{n}" for n in names)
    proc = consumer(
        procs,
        prefix,
        "metadataAssociatorProcessor",
        "MetadataAssociatorProcessor",
        "-mc",
        channels,
        "-rqs",
        "1000",
    )
    out = recorder(procs, prefix, ("attribute", "timeStamp"))
    sim = simulate(procs, prefix, 50, 2, "-nx", "32", "-ny", "32", "-mpv", channels)
    sent = sim_frames_sent(sim, 60)
    wait_for(lambda: out.count() >= sent, 30, f"{sent} frames with metadata", procs=procs)
    assert proc.stop() == 0
    out.close()

    report = final_reports(proc)[1]
    assert report["processorStats"]["nProcessed"] == sent
    assert report["processorStats"]["nMissed"] == 0
    assert report["processorStats"]["nErrors"] == 0
    assert report["publisherStats"]["nPublished"] == sent
    user = report["userStats"]
    assert user["nFramesProcessed"] == sent
    assert user["nFramesWithFullMetadata"] == sent
    assert user["nMetadataMatched"] == len(names) * sent
    assert user["nMetadataMissing"] == 0
    # Each channel brought its value of every frame, plus the one it held when the
    # consumer connected (before the first frame): that one, and only that, is
    # discarded. Every value received is accounted for.
    received = {m: s["nReceived"] for m, s in report["metadataStats"].items()}
    assert received == {n.replace(":", "_"): sent + 1 for n in names}
    assert user["nMetadataDiscarded"] == len(names)
    assert [k for k in out.ids if k > 0] == list(range(1, sent + 1))
    wrong = []
    for k in range(1, sent + 1):
        attributes = {a["name"]: a for a in out.fields[k]["attribute"]}
        for name in names:
            a = attributes.get(name)
            if (
                a is None
                or a["value"][0]["value"] != float(k)
                or a["timeStamp"] != out.fields[k]["timeStamp"]
            ):
                wrong.append((k, name, a and a["value"]))
    assert wrong == []
