"""pvhpc.dashboard.board: rows, set checks and the charts' history."""

from __future__ import annotations

from pvhpc.dashboard.board import HISTORY_POINTS, Board, row_entry, set_entry
from pvhpc.dashboard.sources import control_for_status
from pvhpc.workflow.accounting import SetCheck
from pvhpc.workflow.model import ConsumerSet
from pvhpc.workflow.view import StageRow


def test_row_entry_in_the_page_units():
    row = StageRow("work", "1", "ok", 11, 10, 1, 0, 0, 0, 9.87654, "3/100", 0.03, 0.0012, 0.0456)
    entry = row_entry(row, "work/1", "w:1:control", "w:1:status")
    assert entry["key"] == "work/1" and entry["control"] == "w:1:control"
    assert (entry["received"], entry["processed"], entry["missed"]) == (11, 10, 1)
    assert entry["queued"] == 3 and entry["queue"] == "3/100"
    assert entry["p50"] == 1.2 and entry["p99"] == 45.6  # milliseconds
    assert entry["rate"] == 9.877
    assert row_entry(StageRow("sim", queue="-"), "sim", None, None)["queued"] is None


def _check(published, processed, missed=0, reported=1) -> SetCheck:
    check = SetCheck(ConsumerSet("work 1", [], ["x:image"]), published, processed, missed)
    check.reported = reported
    return check


def test_set_verdicts_live_and_final():
    assert set_entry(_check(10, 10), final=False)["verdict"] == "ok"
    assert set_entry(_check(10, 8), final=False)["verdict"] == "in flight"
    assert set_entry(_check(10, 8), final=True)["verdict"] == "LOST"
    assert set_entry(_check(10, 12), final=False)["verdict"] == "in flight"
    assert set_entry(_check(10, 12), final=True)["verdict"] == "extra"
    assert set_entry(_check(10, 8, 2), final=True)["verdict"] == "loss"
    assert set_entry(_check(10, 7, 2), final=False)["verdict"] == "loss"
    assert set_entry(_check(None, 7), final=False)["verdict"] == "-"
    entry = set_entry(_check(10, 8, 2), final=True)
    assert (entry["published"], entry["accounted"], entry["unaccounted"]) == (10, 10, 0)


def test_history_covers_the_whole_run_at_a_coarser_step():
    board = Board("t")
    seen = []
    board.listen(seen.append)
    n = HISTORY_POINTS * 3
    for i in range(n):
        board.publish({"stages": [{"key": "a", "rate": float(i), "queued": i, "p50": 1, "p99": 2}]})
    history = board.history()["a"]
    assert len(seen) == n and board.snapshot()["stages"][0]["rate"] == n - 1
    assert len(history["t"]) <= HISTORY_POINTS
    assert len(history["t"]) == len(history["rate"]) == len(history["p99"])
    assert history["rate"][0] < 4 and history["rate"][-1] > n - 8  # first and last kept
    assert history["rate"] == sorted(history["rate"])


def test_control_channel_named_like_the_status_channel():
    assert control_for_status("demo:process:1:status") == "demo:process:1:control"
    assert control_for_status("a_status_b:status") == "a_status_b:control"
    assert control_for_status("x:1:stats") is None
