"""Two ways the distributor plugin gives frames to no one, and what pvhpc does.

Groups. The distributor plugin keeps one table of groups for a whole server process: two
channels of one server whose consumers all use the plugin's default group share one
rotation, and a frame of channel X that falls to a consumer of channel Y reaches no
one. Measured before the fix (our mirror serving two channels, a set of two
consumers with ``-du 1`` on each): each consumer processed about a third of its
channel's frames and counted the rest as missed.

A consumer without ``--distributor-group`` now names its group after its input
channel, and so does the mirror's source monitor; these tests run both cases on real
processes and check that every frame of both channels arrives exactly once.

Trigger. The plugin tells frames apart by its trigger field (``timeStamp`` unless
``-dt``): of frames with equal timestamps it passes on only the first. A consumer
set cannot see those frames, but it can count them: the parent reports the ids no
consumer accounted for, and the consumer that got the first frame says why.
"""

from __future__ import annotations

import re
import time

import numpy as np
import pvaccess as pva
import pytest

from harness import (
    Recorder,
    final_reports,
    json_reports,
    pv_get,
    recorded,
    recording_consumer,
    start_mirror,
    wait_accounted,
    wait_all_receiving,
    wait_for,
)
from pvhpc.ntnda import make_frame

pytestmark = pytest.mark.e2e

N = 200


def frame(unique_id: int, stamp: bool = True):
    """An 8x8 frame; ``stamp=False``: timeStamp 0 (the distributor's trigger field: a
    frame whose timeStamp did not change is not a new one to it)."""
    image = np.full((8, 8), unique_id % 256, dtype=np.uint8)
    return make_frame(image, unique_id, time_stamp=None if stamp else 0.0)


@pytest.fixture
def two_sources(prefix):
    """Two source channels on one PvaServer in the test process."""
    names = [f"{prefix}:srcX", f"{prefix}:srcY"]
    server = pva.PvaServer()
    for name in names:
        server.addRecord(name, frame(0))
    yield server, names
    server.removeAllRecords()
    server.stop()


def publish_both(server, names, n: int = N, rate: float = 400.0, stamp=True) -> list[int]:
    """Frames 1..n on every channel, interleaved, paced at ``rate`` per channel;
    ``stamp=False``: every frame with the same (zero) timeStamp."""
    start = time.monotonic()
    for k in range(1, n + 1):
        for name in names:
            server.update(name, frame(k, stamp))
        delay = start + k / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    return list(range(1, n + 1))


def test_consumer_sets_on_two_channels_of_one_mirror_each_get_their_whole_stream(
    procs, prefix, tmp_path, two_sources
):
    server, srcs = two_sources
    dsts = [f"{prefix}:dstX", f"{prefix}:dstY"]
    start_mirror(procs, ",".join(f"({d},{s},pva,1000)" for d, s in zip(dsts, srcs)))
    for d in dsts:
        pv_get(d, 15)
    sets = []
    for first, dst, tag in ((1, dsts[0], "x"), (3, dsts[1], "y")):
        sets.append(
            recording_consumer(
                procs,
                prefix,
                tmp_path,
                "-ic",
                dst,
                "-id",
                first,
                "-nc",
                2,
                "-du",
                1,
                "-sqs",
                100,
                name=f"set-{tag}",
                tag=tag,
            )
        )
    statuses = {
        "x": [f"{prefix}:x:{i}:status" for i in (1, 2)],
        "y": [f"{prefix}:y:{i}:status" for i in (3, 4)],
    }
    wait_all_receiving(statuses["x"] + statuses["y"], procs)
    sent = publish_both(server, srcs)
    for tag in statuses:
        wait_accounted(statuses[tag], len(sent), procs)
    for p in sets:
        assert p.stop() == 0
    for tag, ids_of in (("x", (1, 2)), ("y", (3, 4))):
        template = str(tmp_path / f"{tag}-ids-{{processorId}}.json")
        got = [recorded(template, i)["ids"] for i in ids_of]
        assert all(got), (tag, got)
        assert sorted(sum(got, [])) == sent, tag
    for p in sets:
        missed = {k: r["processorStats"]["nMissed"] for k, r in final_reports(p).items()}
        assert len(missed) == 2 and not any(missed.values()), missed


def test_mirror_source_monitors_of_two_channels_of_one_server_share_nothing(
    procs, prefix, two_sources
):
    server, srcs = two_sources
    dsts = [f"{prefix}:dstX", f"{prefix}:dstY"]
    mirror = start_mirror(
        procs,
        ",".join(f"({d},{s},pva,1000,2,_[pydistributor=updates:1])" for d, s in zip(dsts, srcs)),
    )
    recorders = [Recorder(d, request="record[queueSize=1000]field(uniqueId)") for d in dsts]
    try:
        for r in recorders:
            wait_for(lambda r=r: r.values, 15, f"the first update on {r.channel}", procs=procs)
        sent = publish_both(server, srcs)
        for r in recorders:
            wait_for(lambda r=r: sent[-1] in r.values, 15, "the last frame", procs=procs)
            assert sorted(v for v in r.values if v > 0) == sent
    finally:
        for r in recorders:
            r.close()
    assert mirror.stop() == 0


@pytest.mark.parametrize("trigger", [None, "uniqueId"], ids=["timeStamp", "dt-uniqueId"])
def test_frames_the_distributor_gives_to_no_one_are_counted_and_explained(
    procs, prefix, tmp_path, two_sources, trigger
):
    server, srcs = two_sources
    extra = ["-dt", trigger] if trigger else []
    c = recording_consumer(
        procs, prefix, tmp_path, "-ic", srcs[0], "-nc", 2, "-du", 1, "-sqs", 100, *extra,
        name="set",
    )  # fmt: skip
    statuses = [f"{prefix}:c:{i}:status" for i in (1, 2)]
    wait_all_receiving(statuses, procs)
    sent = publish_both(server, srcs[:1], stamp=False)
    wait_accounted(statuses, len(sent), procs, quiet=2)
    assert c.stop() == 0
    (summary,) = [r for r in json_reports(c) if r.get("kind") == "consumer-set"]
    counted = sum(summary[k] for k in ("processed", "missed", "rejected", "errors"))
    if trigger:  # split on the id: every frame processed
        assert summary["processed"] == len(sent) and summary["nUnaccounted"] == 0, summary
        return
    assert summary["processed"] < len(sent) // 2, summary
    assert counted + summary["nUnaccounted"] == len(sent), summary
    assert summary["nUnaccounted"] > 0, summary
    out = c.output()
    assert re.search(
        rf"WARNING: {summary['nUnaccounted']} frame\(s\) of {srcs[0]} \(ids 1\.\.{len(sent)}\) "
        r"reached no consumer of this set",
        out,
    ), out[-3000:]
    assert "did not change from id" in out and "-dt uniqueId" in out, out[-3000:]
