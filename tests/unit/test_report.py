"""Statistics reports (:mod:`pvhpc.runtime.report`): the table for people, JSON lines for
programs."""

from __future__ import annotations

import io
import json
import re

from pvhpc.runtime.report import format_report, print_report, totals

HEADER = [
    "id",
    "received",
    "processed",
    "missed",
    "rejected",
    "errors",
    "overruns",
    "rate/s",
    "queued",
    "published",
    "lat p50/p99 ms",
]


def snapshot(stage_id: int = 1, kind: str = "consumer", **extra) -> dict:
    snap = {
        f"{kind}Id": stage_id,
        "receiverStats": {"nReceived": 100, "nRejected": 2, "nErrors": 1, "nOverruns": 3},
        "processorStats": {
            "nProcessed": 90,
            "nMissed": 4,
            "nErrors": 5,
            "processedRate": 30.25,
            "runtime": 3.04,
            "latencyP50": 0.0012,
            "latencyP99": 0.0456,
        },
        "queueStats": {"nQueued": 6},
        "publisherStats": {"nPublished": 88},
    }
    snap.update(extra)
    return snap


def cells(line: str) -> list[str]:
    return line.split()


def test_one_stage_is_a_title_a_header_and_a_row():
    lines = format_report([snapshot()]).splitlines()
    assert re.fullmatch(r"consumer report at \d\d:\d\d:\d\d, runtime 3\.0 s", lines[0])
    assert cells(lines[1].replace("lat p50/p99 ms", "lat_p50/p99_ms")) == [
        h.replace(" ", "_") for h in HEADER
    ]
    assert cells(lines[2]) == ["1", "100", "90", "4", "2", "6", "3", "30.2", "6", "88", "1.2/45.6"]
    assert len(lines) == 3


def test_columns_line_up_with_the_header():
    header, row = format_report([snapshot()]).splitlines()[1:3]
    assert len(header) == len(row)
    for name in ("received", "processed", "published"):
        end = header.index(name) + len(name)
        assert row[end - 1] != " " and (end == len(row) or row[end] == " ")


def test_final_report_title_and_the_longest_runtime():
    other = snapshot(2)
    other["processorStats"]["runtime"] = 7.96
    title = format_report([snapshot(1), other], "collector", final=True).splitlines()[0]
    assert title.startswith("collector final report at ") and title.endswith("runtime 8.0 s")


def test_several_stages_get_a_totals_row():
    a, b = snapshot(1), snapshot(2)
    b["receiverStats"]["nReceived"] = 50
    b["processorStats"]["processedRate"] = 10.0
    lines = format_report([a, b]).splitlines()
    assert [cells(line)[0] for line in lines[2:5]] == ["1", "2", "all"]
    total = cells(lines[4])
    assert total == ["all", "150", "180", "8", "4", "12", "6", "40.2", "12", "176"]
    assert totals([a, b]) == {
        "received": 150,
        "processed": 180,
        "missed": 8,
        "rejected": 4,
        "errors": 12,
        "overruns": 6,
        "rate/s": 40.25,
        "queued": 12,
        "published": 176,
    }


def test_collector_metadata_user_and_restart_lines():
    snap = snapshot(
        3,
        "collector",
        collectorStats={"cacheSize": 10, "nCollected": 7, "nested": {"x": 1}},
        metadataStats={
            "pva_x": {"nReceived": 5, "nQueued": 1, "nRejected": 0, "nOverruns": 2},
        },
        userStats={"frames": 7, "seconds": 1.23456789, "name": "det"},
    )
    snap["receiverStats"]["nRestarts"] = 2
    lines = format_report([snap], "collector").splitlines()
    assert lines[3:] == [
        "  collector: cacheSize=10  nCollected=7",
        "  metadata: pva_x received 5 queued 1 rejected 0 overruns 2",
        "  user: frames=7  seconds=1.235  name=det",
        "  source restarted 2 time(s); counting resumed from the new ids",
    ]


def test_extra_lines_name_their_stage_when_there_are_several():
    a = snapshot(1, userStats={"n": 1})
    b = snapshot(2, userStats={"n": 2})
    lines = format_report([a, b]).splitlines()
    assert lines[5:] == ["  [consumer 1] user: n=1", "  [consumer 2] user: n=2"]


def test_sections_choose_the_extra_lines():
    snap = snapshot(
        collectorStats={"cacheSize": 10},
        userStats={"n": 1},
        metadataStats={"m": {"nReceived": 1, "nQueued": 0, "nRejected": 0, "nOverruns": 0}},
    )
    snap["receiverStats"]["nRestarts"] = 1
    only_user = format_report([snap], sections=("user",)).splitlines()[3:]
    assert only_user == ["  user: n=1"]
    text = format_report([snap], sections=("collector", "receiver"))
    assert "collector: cacheSize=10" in text and "source restarted 1" in text
    assert "user:" not in text and "metadata:" not in text
    assert len(format_report([snap], sections=("processor",)).splitlines()) == 3


def test_print_report_text_is_the_formatted_report():
    stream = io.StringIO()
    print_report([snapshot()], "consumer", stream=stream)
    text = stream.getvalue()
    assert text.endswith("\n")
    # The same report but for the clock in its title.
    strip = re.compile(r"\d\d:\d\d:\d\d")
    assert strip.sub("T", text) == strip.sub("T", format_report([snapshot()]) + "\n")


def test_print_report_json_is_one_object_a_line_with_kind_and_final():
    stream = io.StringIO()

    class Seconds(float):
        pass

    snaps = [snapshot(1, userStats={"t": Seconds(1.5)}), snapshot(2, userStats={"o": object()})]
    print_report(snaps, "consumer", "json", final=True, stream=stream)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    reports = [json.loads(line) for line in lines]
    assert [r["consumerId"] for r in reports] == [1, 2]
    assert all(r["kind"] == "consumer" and r["final"] is True for r in reports)
    assert reports[0]["processorStats"] == snaps[0]["processorStats"]
    assert reports[0]["userStats"] == {"t": 1.5}
    assert reports[1]["userStats"]["o"].startswith("<object object")  # default=str
    assert "final" not in snaps[0]  # the snapshots themselves are left alone
