"""The seed's Metadata Handling With Data Consumers: a mirror serves the image and
three metadata channels; four consumers share the frames (distributor) while each
receives every metadata value, accumulating 10 frames before processing so the
metadata has arrived. Every frame must be processed and matched with its metadata."""

from __future__ import annotations

import os

import pytest

from harness import EXAMPLES, final_reports, wait_accounted, wait_all_receiving

pytestmark = pytest.mark.e2e


def test_metadata_with_distributed_consumers(procs, prefix, tmp_path):
    p = prefix
    axes = ("x", "y", "z")

    def metadata(tag):
        return ",".join(f"pva://{p}:{tag}:{a}" for a in axes)

    consumers = procs.start(
        "consumer",
        "-id",
        "1",
        "-nc",
        "4",
        "-ic",
        f"{p}:pv:image",
        "-sc",
        f"{p}:c:*:status",
        "-oc",
        f"{p}:c:*:output",
        "-pf",
        os.path.join(EXAMPLES, "hpcAdMetadataProcessorExample.py"),
        "-pc",
        "HpcAdMetadataProcessor",
        "-pa",
        '{"timestampTolerance": 0.00025}',
        "-sqs",
        "2000",
        "-ao",
        "10",
        "-rqs",
        "0",
        "-du",
        "1",
        "-mc",
        metadata("pv"),
        "-rp",
        "0.5",
        "-rf",
        "json",
        name="consumers",
    )
    channel_map = ",".join(f"({p}:pv:{n},{p}:ad:{n},pva,1000)" for n in ("image", *axes))
    procs.start("mirror", "-cm", channel_map, name="mirror")
    sim = procs.start(
        "sim",
        "-cn",
        f"{p}:ad:image",
        "-nx",
        "32",
        "-ny",
        "32",
        "-fps",
        "100",
        "-rt",
        "3",
        "-mpv",
        metadata("ad"),
        "-std",
        "5",
        "-shd",
        "120",
        name="sim",
    )
    statuses = [f"{p}:c:{i}:status" for i in (1, 2, 3, 4)]
    wait_all_receiving(statuses, procs)
    sent = int(sim.wait_for_output(r"done, sent (\d+) frames", 60).group(1))
    wait_accounted(statuses, sent, procs)
    assert consumers.stop() == 0
    reports = final_reports(consumers)
    assert sum(r["processorStats"]["nProcessed"] for r in reports.values()) == sent
    assert all(r["processorStats"]["nMissed"] == 0 for r in reports.values())
    full = sum(r["userStats"]["nFramesWithFullMetadata"] for r in reports.values())
    assert full == sent, {k: r["userStats"] for k, r in reports.items()}
    # Each consumer saw every metadata value, and kept only its frames' ones.
    for r in reports.values():
        assert all(m["nReceived"] >= sent for m in r["metadataStats"].values())
        assert r["userStats"]["nMetadataDiscarded"] > 0
