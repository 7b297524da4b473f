"""One stage process (:mod:`pvhpc.workflow.process`): the stop sequence on real child
processes, and the JSON report readers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from harness import wait_for
from pvhpc.workflow.process import final_reports, json_lines, stop_process

# A child that reports each signal it gets on stdout. ``mode``: what it does on
# SIGINT and SIGTERM (exit with a status, or ignore). It may start a grandchild in
# its session and print its pid.
CHILD = textwrap.dedent(
    """
    import os, signal, subprocess, sys, time
    on_int, on_term, grandchild = sys.argv[1], sys.argv[2], sys.argv[3] == "1"

    def handler(action):
        def handle(signum, frame):
            print("got", signal.Signals(signum).name, flush=True)
            if action != "ignore":
                os._exit(int(action))
        return handle

    signal.signal(signal.SIGINT, handler(on_int))
    signal.signal(signal.SIGTERM, handler(on_term))
    if grandchild:
        g = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        print("grandchild", g.pid, flush=True)
    print("ready", flush=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        time.sleep(0.05)
    """
)


def start_child(on_int: str, on_term: str, grandchild: bool = False):
    popen = subprocess.Popen(
        [sys.executable, "-c", CHILD, on_int, on_term, "1" if grandchild else "0"],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    lines = []
    while True:
        line = popen.stdout.readline()
        assert line, f"the child exited ({popen.poll()}) before it was ready: {lines}"
        lines.append(line.strip())
        if line.strip() == "ready":
            return popen, lines


def rest_of_output(popen) -> list[str]:
    return [line.strip() for line in popen.stdout.read().splitlines()]


def gone(pid: int) -> bool:
    """No such process, or only its zombie left."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def test_a_stage_that_stops_on_sigint_gets_only_sigint():
    popen, _ = start_child("0", "9")
    assert stop_process(popen, grace=10) == 0
    assert rest_of_output(popen) == ["got SIGINT"]


def test_a_child_ignoring_sigint_gets_sigterm_after_the_grace():
    popen, _ = start_child("ignore", "7")
    assert stop_process(popen, grace=0.3) == 7
    assert rest_of_output(popen) == ["got SIGINT", "got SIGTERM"]


def test_a_child_ignoring_both_is_killed_with_its_whole_process_group():
    popen, lines = start_child("ignore", "ignore", grandchild=True)
    grandchild = int(lines[0].split()[1])
    try:
        assert stop_process(popen, grace=0.3, term_wait=0.3) == -signal.SIGKILL
        assert rest_of_output(popen) == ["got SIGINT", "got SIGTERM"]
        wait_for(lambda: gone(grandchild), 10, "the grandchild to be killed with its group")
    finally:
        if not gone(grandchild):
            os.kill(grandchild, signal.SIGKILL)


def test_a_child_that_exited_already_is_not_signalled():
    popen = subprocess.Popen([sys.executable, "-c", "raise SystemExit(5)"])
    popen.wait(30)
    assert stop_process(popen, grace=10) == 5


def test_json_lines_reads_only_json_objects():
    text = "\n".join(
        [
            "consumer report at 12:00:00",
            '{"consumerId": 1, "final": false}',
            '   {"consumerId": 2}   ',
            "{not json}",
            "[1, 2]",
            '{"a": 1} trailing',
            '{"nested": {"x": [1, 2]}}',
            "",
        ]
    )
    assert json_lines(text) == [
        {"consumerId": 1, "final": False},
        {"consumerId": 2},
        {"nested": {"x": [1, 2]}},
    ]
    assert json_lines("") == []


def test_final_reports_pick_the_final_report_over_later_ones():
    reports = [
        {"consumerId": 1, "n": 1},
        {"consumerId": 1, "n": 2, "final": True},
        {"consumerId": 1, "n": 3},  # a late periodic report never replaces the final one
        {"consumerId": 2, "n": 4},
        {"consumerId": 2, "n": 5},  # no final report (it died): its latest one
        {"collectorId": 3, "n": 6, "final": True},  # another stage type
        {"n": 7, "final": True},
    ]
    got = final_reports(reports, "consumerId")
    assert {k: v["n"] for k, v in got.items()} == {1: 2, 2: 5}
    assert final_reports(reports, "collectorId") == {3: reports[5]}
    assert final_reports([], "consumerId") == {}


@pytest.mark.parametrize("id_name", ["consumerId", "collectorId"])
def test_final_reports_round_trip_through_json_lines(id_name):
    text = "\n".join(
        [
            f'{{"{id_name}": 2, "final": false, "n": 1}}',
            "a table line",
            f'{{"{id_name}": 2, "final": true, "n": 2}}',
        ]
    )
    assert final_reports(json_lines(text), id_name)[2]["n"] == 2
