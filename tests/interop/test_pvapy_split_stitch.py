"""The seed's "Splitting and Stitching Images With Data Collector", with processors
written against the reference's user API (pvapy_processors/) running unchanged in
pvhpc: a split consumer cuts every frame into 4 tiles, 4 passthrough consumers share
the tiles (distributor, 1 update each), a collector sorts the 4 streams and its stitch
processor rebuilds the frames. Every frame sent must come back pixel for pixel, and
every stage must count exactly what went through it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pvapy_support import REFERENCE_PASSTHROUGH, FrameRecorder, processor_file

from harness import final_reports, pv_get, sim_frames_sent, wait_for

pytestmark = pytest.mark.e2e

N_TILES = 4


def wait_connected(procs, status):
    wait_for(
        lambda: pv_get(status)["receiverStats"]["nReceived"] >= 1,
        40,
        f"{status} to connect",
        procs=procs,
    )


def run_split_stitch(procs, prefix, tmp_path, frames, tile, fps, seconds):
    """Run the pipeline on ``frames`` (cycled by the simulator); return the figures."""
    p = prefix
    n_frames, ny, nx = frames.shape
    source = tmp_path / "frames.npy"
    np.save(source, frames)
    common = ("-sqs", "100", "-rp", "1", "-rf", "json")
    split = procs.start(
        "consumer",
        "-ic",
        f"{p}:image",
        "-oc",
        f"{p}:split:*:output",
        "-sc",
        f"{p}:split:*:status",
        "-cc",
        f"{p}:split:*:control",
        "-pf",
        processor_file("splitTilesProcessor"),
        "-pc",
        "SplitTilesProcessor",
        "-pa",
        json.dumps({"nx": tile[1], "ny": tile[0]}),
        *common,
        name="split",
    )
    tiles = procs.start(
        "consumer",
        "-ic",
        f"{p}:split:1:output",
        "-oc",
        f"{p}:process:*:output",
        "-sc",
        f"{p}:process:*:status",
        "-cc",
        f"{p}:process:*:control",
        "-pc",
        REFERENCE_PASSTHROUGH,
        "-nc",
        N_TILES,
        "-du",
        "1",
        *common,
        name="process",
    )
    collector = procs.start(
        "collector",
        "-id",
        "1",
        "-pid",
        "1,2,3,4",
        "-ic",
        f"{p}:process:*:output",
        "-oc",
        f"{p}:collector:*:output",
        "-sc",
        f"{p}:collector:*:status",
        "-cc",
        f"{p}:collector:*:control",
        "-pf",
        processor_file("stitchTilesProcessor"),
        "-pc",
        "StitchTilesProcessor",
        "-pa",
        json.dumps({"nx": nx, "ny": ny}),
        "-ccs",
        "100",
        *common,
        name="collector",
    )
    # The tile consumers and the collector connect to channels that exist already;
    # the split consumer connects to the simulator during its start delay (frame 0).
    for status in [f"{p}:process:{i}:status" for i in (1, 2, 3, 4)]:
        wait_connected(procs, status)
    wait_for(
        lambda: all(
            v["nReceived"] >= 1 for v in pv_get(f"{p}:collector:1:status")["producerStats"].values()
        ),
        40,
        "the collector to connect to its 4 producers",
        procs=procs,
    )
    out = FrameRecorder(f"{p}:collector:1:output")
    wait_for(lambda: out.ids, 20, "the collector's output (its current value)", procs=procs)
    sim = procs.start(
        "sim",
        "-cn",
        f"{p}:image",
        "-if",
        source,
        "-nf",
        n_frames,
        "-fps",
        fps,
        "-rt",
        seconds,
        "-std",
        "3",
        "-shd",
        "300",
        "-rf",
        "json",
        name="sim",
    )
    wait_connected(procs, f"{p}:split:1:status")
    sent = sim_frames_sent(sim, 60 + seconds)
    assert sent > 0
    wait_for(
        lambda: pv_get(f"{p}:collector:1:status")["processorStats"]["nProcessed"] >= N_TILES * sent,
        60,
        f"the collector to process {N_TILES * sent} tiles",
        procs=procs,
    )
    wait_for(lambda: out.count() >= sent, 30, f"{sent} stitched frames", procs=procs)
    # As the seed checks with pvget: the tiles, on the split's and on each passthrough
    # consumer's output, are tile-sized NTNDArrays with the split's extra fields.
    grid = (nx // tile[1], ny // tile[0])
    for channel in [f"{p}:split:1:output"] + [f"{p}:process:{i}:output" for i in (1, 2, 3, 4)]:
        current = pv_get(channel)
        assert [d["size"] for d in current["dimension"]] == [tile[1], tile[0]], channel
        assert 0 <= current["tileIndexX"] < grid[0] and 0 <= current["tileIndexY"] < grid[1]
        assert current["uniqueId"] == sent, channel
    assert collector.stop() == 0
    out.close()
    assert tiles.stop() == 0
    assert split.stop() == 0
    sim.stop()

    split_report = final_reports(split)[1]
    tile_reports = final_reports(tiles)
    col = final_reports(collector, "collectorId")[1]
    equal = [
        k
        for k in range(1, sent + 1)
        if k in out.images and np.array_equal(out.images[k], frames[(k - 1) % n_frames])
    ]
    figures = {
        "frames sent": sent,
        "tiles per consumer": {
            i: r["processorStats"]["nProcessed"] for i, r in sorted(tile_reports.items())
        },
        "frames stitched": col["userStats"]["nFramesStitched"],
        "frames equal to source": len(equal),
    }
    print(figures)

    # Split: every frame, 4 tiles each, all published.
    assert split_report["processorStats"]["nProcessed"] == sent
    assert split_report["userStats"]["nFramesProcessed"] == sent
    assert split_report["userStats"]["nFramesRejected"] == 0
    assert split_report["userStats"]["nTilesPublished"] == N_TILES * sent
    assert split_report["publisherStats"]["nPublished"] == N_TILES * sent
    # The 4 passthrough consumers share the tiles: together exactly all of them.
    assert sorted(tile_reports) == [1, 2, 3, 4]
    assert sum(r["processorStats"]["nProcessed"] for r in tile_reports.values()) == (N_TILES * sent)
    for r in tile_reports.values():
        assert r["processorStats"]["nMissed"] == 0
        assert r["receiverStats"]["nRejected"] == 0
        assert r["processorStats"]["nProcessed"] == r["publisherStats"]["nPublished"]
    # The collector: every tile once, nothing rejected, missed or duplicated.
    assert col["processorStats"]["nProcessed"] == N_TILES * sent
    assert col["processorStats"]["nMissed"] == 0
    assert col["receiverStats"]["nRejected"] == 0
    assert col["collectorStats"]["nCollected"] == N_TILES * sent
    assert col["collectorStats"]["nDuplicates"] == 0
    user = col["userStats"]
    assert user["nTilesReceived"] == N_TILES * sent
    assert (user["nDuplicateTiles"], user["nLateTiles"], user["nFramesIncomplete"]) == (0, 0, 0)
    assert user["nFramesStitched"] == sent
    assert col["publisherStats"]["nPublished"] == sent
    # Every source frame came back once, in id order, equal to what was sent.
    assert out.repeats == 0
    assert [k for k in out.ids if k > 0] == list(range(1, sent + 1))
    assert len(equal) == sent
    assert all(out.images[k].dtype == frames.dtype for k in range(1, sent + 1))
    return figures


def test_split_and_stitch_small_frames(procs, prefix, tmp_path):
    rng = np.random.default_rng(11)
    frames = rng.integers(0, 65536, size=(5, 48, 64), dtype=np.uint16)
    run_split_stitch(procs, prefix, tmp_path, frames, tile=(24, 32), fps=20, seconds=2)


def test_split_and_stitch_seed_size(procs, prefix, tmp_path):
    """3840x2160 uint8 frames in 1920x1080 tiles, as in the seed (few frames, slowly)."""
    rng = np.random.default_rng(12)
    frames = rng.integers(0, 256, size=(3, 2160, 3840), dtype=np.uint8)
    run_split_stitch(procs, prefix, tmp_path, frames, tile=(1080, 1920), fps=2, seconds=3)
