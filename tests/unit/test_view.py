"""The live status view (:mod:`pvhpc.workflow.view`): rows from status snapshots, channel
patterns, the rendered table, and a StatusWatcher on real status records."""

from __future__ import annotations

import io
import logging
import re

import pvaccess as pva
import pytest
from rich.console import Console

from harness import wait_for
from pvhpc.channels import StageServer
from pvhpc.workflow.view import (
    StageRow,
    StatusWatcher,
    expand_pattern,
    row_from_status,
    status_table,
)


def consumer_status(**changes) -> dict:
    status = {
        "consumerId": 2,
        "objectTime": 100.0,
        "receiverStats": {"nReceived": 50, "nRejected": 0, "nErrors": 0, "nOverruns": 0},
        "processorStats": {
            "nProcessed": 50,
            "nMissed": 0,
            "nErrors": 0,
            "processedRate": 12.5,
            "latencyP50": 0.002,
            "latencyP99": 0.0105,
        },
        "queueStats": {"nQueued": 8, "maxLength": 10},
        "publisherStats": {"nPublished": 49},
    }
    for path, value in changes.items():
        section, _, key = path.partition("__")
        status.setdefault(section, {})[key] = value
    return status


# -- rows ----------------------------------------------------------------------------


def test_a_row_from_a_consumer_status():
    row = row_from_status("work", consumer_status())
    assert row == StageRow(
        label="work",
        stage_id="2",
        state="ok",
        received=50,
        processed=50,
        missed=0,
        rejected=0,
        errors=0,
        overruns=0,
        rate=12.5,
        queue="8/10",
        queue_fill=0.8,
        latency_p50=0.002,
        latency_p99=0.0105,
        published=49,
    )
    assert row.loss == 0


def test_loss_adds_missed_rejected_errors_and_overruns():
    status = consumer_status(
        processorStats__nMissed=3,
        processorStats__nErrors=1,
        receiverStats__nErrors=2,
        receiverStats__nRejected=4,
        receiverStats__nOverruns=5,
    )
    row = row_from_status("work", status)
    assert (row.missed, row.rejected, row.errors, row.overruns) == (3, 4, 3, 5)
    assert row.loss == 15
    assert row.state == "LOSS"
    assert StageRow("x", missed=None, errors=2).loss == 2


@pytest.mark.parametrize(
    "queue,text,fill",
    [
        ({"nQueued": 3, "maxLength": 0}, "3/∞", 0.0),
        ({"nQueued": 0, "maxLength": -1}, "-", 0.0),
        ({"nQueued": 5}, "-", 0.0),
        ({"nQueued": 1, "maxLength": 4}, "1/4", 0.25),
    ],
)
def test_queue_text_and_fill(queue, text, fill):
    status = consumer_status()
    status["queueStats"] = queue
    row = row_from_status("w", status)
    assert (row.queue, row.queue_fill) == (text, fill)


def test_a_measured_rate_replaces_the_average_and_missing_latency_is_none():
    status = consumer_status()
    del status["processorStats"]["latencyP50"], status["processorStats"]["latencyP99"]
    row = row_from_status("w", status, rate=99.0)
    assert row.rate == 99.0
    assert (row.latency_p50, row.latency_p99) == (None, None)


@pytest.mark.parametrize(
    "changes,connected,state",
    [
        ({}, False, "gone"),
        ({"receiverStats__connected": False, "receiverStats__nReceived": 0}, True, "waiting"),
        ({"receiverStats__connected": False}, True, "no input"),
        ({"receiverStats__connected": True}, True, "ok"),
    ],
)
def test_states(changes, connected, state):
    status = consumer_status(**changes)
    if "receiverStats__nReceived" in changes:
        status["processorStats"]["nProcessed"] = 0
    assert row_from_status("w", status, connected=connected).state == state


def test_a_collector_is_up_only_if_every_producer_is():
    status = consumer_status()
    status["collectorId"] = status.pop("consumerId")
    status["producerStats"] = {
        "producer1": {"connected": True},
        "producer2": {"connected": False},
    }
    row = row_from_status("collect", status)
    assert (row.stage_id, row.state) == ("2", "no input")
    status["producerStats"]["producer2"]["connected"] = True
    assert row_from_status("collect", status).state == "ok"


def test_an_empty_status_gives_a_row_of_zeros():
    row = row_from_status("w", {})
    assert (row.stage_id, row.received, row.processed, row.queue, row.published) == (
        "-",
        0,
        0,
        "-",
        0,
    )
    assert row.state == "ok"


# -- channel patterns ------------------------------------------------------------------


def test_expand_pattern():
    assert expand_pattern("c:*:status", 3) == ["c:1:status", "c:2:status", "c:3:status"]
    assert expand_pattern("c:*:status", 2, "03d") == ["c:001:status", "c:002:status"]
    assert expand_pattern("c:1:status", 5) == ["c:1:status"]
    assert expand_pattern("*:*", 1) == ["1:1"]
    assert expand_pattern("c:*", 0) == []


# -- the table ---------------------------------------------------------------------------


def render(table, styles: bool = False) -> str:
    console = Console(
        record=True, width=200, force_terminal=True, color_system="standard", file=io.StringIO()
    )
    console.print(table)
    return console.export_text(styles=styles)


def test_status_table_shows_every_column_and_row():
    rows = [
        row_from_status("work", consumer_status()),
        StageRow("sim", state="starting"),
    ]
    text = render(status_table(rows, title="my workflow", caption="press q"))
    lines = [line.strip() for line in text.splitlines()]
    assert lines[0] == "my workflow"
    header = next(line for line in lines if "stage" in line)
    for name in (
        "stage",
        "id",
        "state",
        "received",
        "processed",
        "missed",
        "rejected",
        "errors",
        "overruns",
        "rate/s",
        "queue",
        "p50 ms",
        "p99 ms",
        "published",
    ):
        assert name in header
    work = next(line for line in lines if line.startswith("work"))
    assert work.split() == ["work", "2", "ok", "50", "50", "0", "0", "0", "0", "12.5", "8/10"] + [
        "2.0",
        "10.5",
        "49",
    ]
    sim = next(line for line in lines if line.startswith("sim"))
    assert sim.split() == ["sim", "-", "starting"] + ["-"] * 11
    assert lines[-1] == "press q"


def test_status_table_marks_loss_in_red_and_a_full_queue_in_yellow():
    row = row_from_status("work", consumer_status(processorStats__nMissed=7))
    styled = render(status_table([row]), styles=True)
    assert "\x1b[1;31m7\x1b[0m" in styled  # missed, bold red
    assert re.search(r"\x1b\[1;31mLOSS *\x1b\[0m", styled)
    assert "\x1b[1;33m8/10\x1b[0m" in styled  # 80 % full, bold yellow
    calm = render(status_table([row_from_status("w", consumer_status())]), styles=True)
    assert "\x1b[1;31m" not in calm


# -- StatusWatcher -------------------------------------------------------------------------

STATUS = {
    "consumerId": pva.UINT,
    "objectTime": pva.DOUBLE,
    "receiverStats": {"nReceived": pva.LONG, "connected": pva.BOOLEAN},
    "processorStats": {"nProcessed": pva.LONG},
}


def status_value(t: float, n: int) -> pva.PvObject:
    return pva.PvObject(
        STATUS,
        {
            "consumerId": 1,
            "objectTime": t,
            "receiverStats": {"nReceived": n, "connected": True},
            "processorStats": {"nProcessed": n},
        },
    )


@pytest.fixture
def server():
    s = pva.PvaServer()
    yield s
    s.removeAllRecords()


@pytest.fixture
def watcher():
    w = StatusWatcher()
    yield w
    w.close()


def test_watcher_keeps_the_latest_status_of_a_stage_server(prefix, watcher):
    stage = StageServer("consumerId", 4, logging.getLogger("pvhpc.test"))
    try:
        channel = f"{prefix}:status"
        stats = {
            "receiverStats": {"nReceived": 0, "connected": True},
            "processorStats": {"nProcessed": 0, "nMissed": 0},
        }
        stage.setup_status(channel, stats)
        watcher.add(channel)
        watcher.add(channel)  # once only
        assert watcher.channels == [channel]
        wait_for(lambda: watcher.latest(channel), 10, "the first status")
        stats["receiverStats"]["nReceived"] = stats["processorStats"]["nProcessed"] = 9
        stats["processorStats"]["nMissed"] = 1
        stage.publish_status(stats)
        wait_for(lambda: watcher.latest(channel)["objectId"] == 1, 10, "the published status")
        row = watcher.row(channel, label="work")
        assert (row.label, row.stage_id, row.received, row.missed, row.state) == (
            "work",
            "4",
            9,
            1,
            "LOSS",
        )
        assert watcher.connected(channel)
    finally:
        stage.stop()


def test_watcher_rate_from_the_last_two_statuses(prefix, server, watcher):
    channel = f"{prefix}:status"
    server.addRecord(channel, status_value(100.0, 10))
    watcher.add(channel)
    wait_for(lambda: watcher.latest(channel), 10, "the first status")
    assert watcher.rate(channel) is None  # one sample
    server.update(channel, status_value(101.0, 60))
    wait_for(lambda: watcher.latest(channel)["objectTime"] == 101.0, 10, "the second status")
    assert watcher.rate(channel) == 50.0
    # A status 0.1 s later (a get_stats) widens the window back to 101.0.
    server.update(channel, status_value(101.1, 65))
    wait_for(lambda: watcher.latest(channel)["objectTime"] == 101.1, 10, "the third status")
    assert watcher.rate(channel) == pytest.approx(5 / 0.1)
    # Counts that went down (reset_stats) give no rate.
    server.update(channel, status_value(102.0, 3))
    wait_for(lambda: watcher.latest(channel)["objectTime"] == 102.0, 10, "the fourth status")
    assert watcher.rate(channel) is None
    assert watcher.row(channel).rate == 0.0  # no measured rate: the average (absent: 0)


def test_watcher_answered_in_order_and_gone_channels(prefix, server, watcher):
    first, second, absent = f"{prefix}:s1", f"{prefix}:s2", f"{prefix}:s3"
    server.addRecord(second, status_value(1.0, 1))
    for name in (first, second, absent):
        watcher.add(name)
    wait_for(lambda: watcher.answered() == [second], 10, "the second channel's status")
    new_at = watcher.last_new_answer()
    assert new_at is not None
    server.addRecord(first, status_value(1.0, 1))
    wait_for(lambda: watcher.answered() == [first, second], 10, "the first channel's status")
    assert watcher.last_new_answer() > new_at
    assert watcher.row(absent) is None and watcher.latest(absent) is None
    server.removeRecord(second)
    wait_for(lambda: not watcher.connected(second), 10, "the second channel to go")
    assert watcher.row(second).state == "gone"
    assert watcher.connected(first)
