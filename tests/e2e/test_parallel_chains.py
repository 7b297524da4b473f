"""The seed's Parallel Processing Chains: two passthrough consumers split the stream
in batches of 8, and each feeds a set of 4 processing consumers that again take
batches of 8. Every frame must be processed exactly once, and with ``--oid-offset 57``
no consumer may count a frame as missed."""

from __future__ import annotations

import json

import pytest

from harness import (
    RECORDING_PROCESSOR,
    final_reports,
    recorded,
    wait_accounted,
    wait_all_receiving,
)

pytestmark = pytest.mark.e2e


def test_parallel_processing_chains(procs, prefix, tmp_path):
    passthrough = procs.start(
        "consumer",
        "-ic",
        f"{prefix}:image",
        "-oc",
        f"{prefix}:pass:*:output",
        "-sc",
        f"{prefix}:pass:*:status",
        "-sqs",
        "100",
        "-du",
        "8",
        "-nc",
        "2",
        "-rp",
        "0.5",
        "-rf",
        "json",
        name="passthrough",
    )
    pa = json.dumps({"outputFile": str(tmp_path / "ids-{processorId}.json")})
    sets = []
    for first, source in ((1, 1), (5, 2)):
        sets.append(
            procs.start(
                "consumer",
                "-id",
                first,
                "-nc",
                "4",
                "-ic",
                f"{prefix}:pass:{source}:output",
                "-sc",
                f"{prefix}:proc:*:status",
                "-oc",
                f"{prefix}:proc:*:output",
                "-sqs",
                "100",
                "-du",
                "8",
                "--oid-offset",
                "57",
                "-pf",
                RECORDING_PROCESSOR,
                "-pc",
                "RecordingProcessor",
                "-pa",
                pa,
                "-rp",
                "0.5",
                "-rf",
                "json",
                name=f"set{first}",
            )
        )
    sim = procs.start(
        "sim",
        "-cn",
        f"{prefix}:image",
        "-nx",
        "32",
        "-ny",
        "32",
        "-fps",
        "80",
        "-rt",
        "4",
        "-std",
        "5",
        "-shd",
        "120",
        name="sim",
    )
    statuses = [f"{prefix}:pass:{i}:status" for i in (1, 2)]
    statuses += [f"{prefix}:proc:{i}:status" for i in range(1, 9)]
    wait_all_receiving(statuses, procs)
    sent = int(sim.wait_for_output(r"done, sent (\d+) frames", 60).group(1))
    wait_accounted(statuses[2:], sent, procs)
    for p in (*sets, passthrough):
        assert p.stop() == 0
    ids = [recorded(str(tmp_path / "ids-{processorId}.json"), i)["ids"] for i in range(1, 9)]
    assert sorted(sum(ids, [])) == list(range(1, sent + 1))
    for i, got in enumerate(ids, start=1):
        # batches of 8 consecutive ids
        assert got and all(g[0] % 8 == 1 for g in _runs(got)), (i, got)
    reports = {}
    for p in sets:
        reports.update(final_reports(p))
    assert sorted(reports) == list(range(1, 9))
    assert all(r["processorStats"]["nMissed"] == 0 for r in reports.values()), {
        k: r["processorStats"]["nMissed"] for k, r in reports.items()
    }


def _runs(ids):
    runs, current = [], [ids[0]]
    for a, b in zip(ids, ids[1:]):
        if b == a + 1:
            current.append(b)
        else:
            runs.append(current)
            current = [b]
    runs.append(current)
    return runs
