"""p4p (PVXS) as the client of our servers: it reads a consumer's, a collector's and the
mirror's channels the way a PVXS tool or IOC would, and what it decodes must be what
our simulator sent (the frames of an .npy file, pixel for pixel) and what the stage
itself reports at exit."""

from __future__ import annotations

import numpy as np
import pytest
from p4p_source import P4pMonitor, p4p_context, p4p_get, unique_id

from harness import final_reports, pv_get, sim_frames_sent, wait_accounted, wait_for

pytestmark = pytest.mark.e2e

N_FRAMES = 30
FPS = 30


@pytest.fixture
def ctx():
    c = p4p_context()
    yield c
    c.close()


@pytest.fixture
def frames(tmp_path):
    """Four distinct 12x16 uint16 frames in an .npy file; frame k is ``frames[(k-1) % 4]``."""
    data = np.random.default_rng(7).integers(0, 65535, size=(4, 12, 16), dtype=np.uint16)
    path = tmp_path / "frames.npy"
    np.save(path, data)
    return data, str(path)


def start_sim(procs, prefix, path):
    """The simulator serving the file's frames; the first one 3 s after it starts (the
    stages are already up, only the monitors have to connect); it keeps serving after
    the stream until stopped."""
    return procs.start(
        "sim",
        "-cn",
        f"{prefix}:image",
        "-if",
        path,
        "-fps",
        FPS,
        "-rt",
        N_FRAMES / FPS,
        "-std",
        "3",
        "-shd",
        "60",
        "-rf",
        "json",
        name="sim",
    )


def frames_sent(sim) -> int:
    return sim_frames_sent(sim, N_FRAMES / FPS + 30)


def assert_frames_equal(values: list, data: np.ndarray, sent: int, where: str) -> None:
    """``values`` (p4p's unwrapped NTNDArrays) are frames 1..sent, each equal to the
    file's frame pixel for pixel, in shape and type too."""
    frames = [v for v in values if unique_id(v) > 0]  # the channel's initial value aside
    assert [unique_id(v) for v in frames] == list(range(1, sent + 1)), where
    for v in frames:
        expected = data[(unique_id(v) - 1) % len(data)]
        got = np.asarray(v)
        assert got.dtype == expected.dtype and got.shape == expected.shape, (where, got.shape)
        assert np.array_equal(got, expected), f"{where}: frame {unique_id(v)} differs"


COUNTS = {
    "receiverStats": ("nReceived", "nOverruns", "nRejected", "nErrors"),
    "processorStats": ("nProcessed", "nMissed", "nErrors", "firstObjectId", "lastObjectId"),
    "publisherStats": ("nPublished", "nErrors"),
    "queueStats": ("nReceived", "nRejected", "nDelivered", "nQueued"),
}


def assert_status_matches(status, report: dict, extra: dict | None = None) -> None:
    """The counts p4p read on a status channel are the stage's own final report's."""
    for group, names in {**COUNTS, **(extra or {})}.items():
        for name in names:
            assert status[group][name] == report[group][name], (group, name)


def settle_status(ctx, control: str, status: str):
    """Ask for fresh statistics with a p4p put, then read them with a p4p get."""
    before = p4p_get(ctx, status)["objectId"]
    ctx.put(control, {"command": "get_stats", "args": ""}, wait=True)
    wait_for(lambda: ctx.get(status)["objectId"] > before, 10, f"{status} to be published")
    return ctx.get(status)


def test_p4p_reads_a_consumers_status_output_and_control(procs, prefix, frames, ctx):
    data, path = frames
    c = procs.start(
        "consumer",
        "-ic",
        f"{prefix}:image",
        "-oc",
        f"{prefix}:c:*:output",
        "-sc",
        f"{prefix}:c:*:status",
        "-cc",
        f"{prefix}:c:*:control",
        "-sqs",
        "100",
        "-rp",
        "0.5",
        "-rf",
        "json",
        name="consumer",
    )
    output = f"{prefix}:c:1:output"
    status = f"{prefix}:c:1:status"
    control = f"{prefix}:c:1:control"
    p4p_get(ctx, status, 30)
    out = P4pMonitor(ctx, output)
    sim = start_sim(procs, prefix, path)
    wait_for(lambda: p4p_get(ctx, status)["receiverStats"]["nReceived"] >= 1, 30, "connection")
    sent = frames_sent(sim)
    wait_accounted([status], sent, procs)
    wait_for(lambda: unique_id(out.snapshot()[-1]) == sent, 20, "the last frame on the output")

    assert_frames_equal(out.snapshot(), data, sent, output)

    st = settle_status(ctx, control, status)
    assert st["consumerId"] == 1
    assert st["inputChannel"] == f"{prefix}:image"
    assert st["processorStats"]["nProcessed"] == sent

    ctl = p4p_get(ctx, control)
    assert ctl["consumerId"] == 1
    assert ctl["command"] == "get_stats"
    assert "Statistics" in ctl["statusMessage"]
    assert {"objectTime", "objectTimestamp", "args"} <= set(ctl.keys())

    assert c.stop() == 0
    report = final_reports(c)[1]
    assert_status_matches(st, report)
    assert report["processorStats"]["nProcessed"] == sent
    out.close()
    sim.stop()


def test_p4p_reads_a_collectors_output_and_status(procs, prefix, frames, ctx):
    data, path = frames
    # sim -> two consumers taking alternate frames -> the collector puts them in order.
    procs.start(
        "consumer",
        "-ic",
        f"{prefix}:image",
        "-oc",
        f"{prefix}:c:*:output",
        "-sc",
        f"{prefix}:c:*:status",
        "-nc",
        "2",
        "-du",
        "1",
        "-sqs",
        "100",
        "-rp",
        "0.5",
        name="consumers",
    )
    col = procs.start(
        "collector",
        "-id",
        "1",
        "-pid",
        "1,2",
        "-ic",
        f"{prefix}:c:*:output",
        "-oc",
        f"{prefix}:col:*:output",
        "-sc",
        f"{prefix}:col:*:status",
        "-cc",
        f"{prefix}:col:*:control",
        "-sqs",
        "100",
        "-rp",
        "0.5",
        "-rf",
        "json",
        name="collector",
    )
    output = f"{prefix}:col:1:output"
    status = f"{prefix}:col:1:status"
    control = f"{prefix}:col:1:control"
    for ch in (status, f"{prefix}:c:1:status", f"{prefix}:c:2:status"):
        p4p_get(ctx, ch, 30)
    out = P4pMonitor(ctx, output)
    sim = start_sim(procs, prefix, path)
    for i in (1, 2):
        wait_for(
            lambda i=i: pv_get(f"{prefix}:c:{i}:status")["receiverStats"]["nReceived"] >= 1,
            30,
            f"consumer {i} to connect",
            procs=procs,
        )
    wait_for(
        lambda: all(
            p["connected"] for p in p4p_get(ctx, status)["producerStats"].todict().values()
        ),
        30,
        "the collector to connect to both producers",
        procs=procs,
    )
    sent = frames_sent(sim)
    wait_accounted([status], sent, procs)
    wait_for(lambda: unique_id(out.snapshot()[-1]) == sent, 20, "the last frame on the output")

    assert_frames_equal(out.snapshot(), data, sent, output)

    st = settle_status(ctx, control, status)
    assert st["collectorId"] == 1
    assert st["collectorStats"]["nCollected"] == sent
    assert p4p_get(ctx, control)["collectorId"] == 1

    assert col.stop() == 0
    report = final_reports(col, "collectorId")[1]
    assert_status_matches(
        st, report, {"collectorStats": ("nCollected", "nRejected", "nDuplicates", "lastReleasedId")}
    )
    for name, producer in report["producerStats"].items():
        assert st["producerStats"][name]["nReceived"] == producer["nReceived"] > 0, name
    out.close()
    sim.stop()


def test_p4p_reads_the_mirrors_dst_channel(procs, prefix, frames, ctx):
    data, path = frames
    dst = f"{prefix}:mirror"
    mirror = procs.start("mirror", "-cm", f"({dst},{prefix}:image,pva,1000)", name="mirror")
    mirror.wait_for_output(r"mirroring ")
    sim = start_sim(procs, prefix, path)
    out = P4pMonitor(ctx, dst)
    out.wait_count(1, 30, procs)  # connected through the mirror to the source
    sent = frames_sent(sim)
    wait_for(
        lambda: unique_id(out.snapshot()[-1]) == sent,
        20,
        f"frame {sent} on {dst}",
        procs=procs,
    )
    assert_frames_equal(out.snapshot(), data, sent, dst)
    out.close()
    assert mirror.stop() == 0
    sim.stop()
