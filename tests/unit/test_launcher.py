"""Running stages (:mod:`pvhpc.runtime.launcher`): ``run_group`` with real spawned consumers.

``run_group`` runs in the test's main thread, as in ``pvapy-hpc-consumer -nc 2``: it
installs its SIGINT/SIGTERM handlers there (restored after each test). The children
are real consumer processes (spawned) reading a PvaServer record of the test
process, or p4p in a child process for a source without the distributor. A helper
thread plays the user: it waits for the children's status channels, then kills one,
or sends SIGINT to this process ("Ctrl-C on the parent").
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import threading

import pvaccess as pva
import pytest

from harness import pv_get, wait_for
from p4p_peer import P4pSource
from pvhpc.runtime.config import StageConfig
from pvhpc.runtime.consumer import Consumer
from pvhpc.runtime.launcher import run_group, run_single
from pvhpc.workflow.process import final_reports, json_lines

FRAME = {"uniqueId": pva.INT, "value": pva.DOUBLE}


@pytest.fixture(autouse=True)
def _restore_signal_handlers():
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@pytest.fixture(scope="module")
def source():
    server = pva.PvaServer()
    yield server
    server.removeAllRecords()


def configs(prefix: str, channel: str, n: int = 2, **options) -> list[StageConfig]:
    return [
        StageConfig(
            kind="consumer",
            stage_id=i,
            input_channel=channel,
            status_channel=f"{prefix}:c:{i}:status",
            server_queue_size=100,
            n_consumers=n,
            **{"report_period": 0.25, **options},
        )
        for i in range(1, n + 1)
    ]


class User(threading.Thread):
    """What a user does while ``run_group`` runs in the main thread: ``steps`` in
    order; an exception is kept for the test to raise, and stops the group."""

    def __init__(self, *steps):
        super().__init__(daemon=True)
        self.steps = steps
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for step in self.steps:
                step()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            self.error = exc
            ctrl_c()

    def check(self) -> None:
        self.join(10)
        if self.error is not None:
            raise self.error


def ctrl_c() -> None:
    os.kill(os.getpid(), signal.SIGINT)


def children() -> dict[str, mp.Process]:
    return {p.name: p for p in mp.active_children()}


def status_up(cfgs, received: int = 1):
    """Wait until every stage's status (published every report period) shows
    ``received`` updates."""

    def check():
        for cfg in cfgs:
            wait_for(
                lambda c=cfg: pv_get(c.status_channel)["receiverStats"]["nReceived"] >= received,
                20,
                f"{cfg.status_channel} to show {received} received",
            )

    return check


def test_stop_through_the_parent_stops_every_child_with_its_final_report(source, prefix, capsys):
    channel = f"{prefix}:image"
    source.addRecord(channel, pva.PvObject(FRAME, {"uniqueId": 0}))
    cfgs = configs(prefix, channel, report_format="json")

    def publish():
        for i in range(1, 11):
            source.update(channel, pva.PvObject(FRAME, {"uniqueId": i}))

    user = User(status_up(cfgs), publish, status_up(cfgs, 11), ctrl_c)
    user.start()
    status = run_group(cfgs, Consumer, None, None)
    user.check()
    out = capsys.readouterr().out
    reports = final_reports(json_lines(out), "consumerId")
    assert status == 0, out
    assert sorted(reports) == [1, 2]
    for r in reports.values():
        assert r["final"] is True
        assert r["processorStats"]["nProcessed"] == 10
        assert r["receiverStats"]["nSkipped"] == 1
    assert "failed" not in out


def test_a_child_killed_by_sigkill_is_reported_and_the_status_is_1(source, prefix, capsys, caplog):
    channel = f"{prefix}:image"
    source.addRecord(channel, pva.PvObject(FRAME, {"uniqueId": 0}))
    cfgs = configs(prefix, channel)
    killed: list[int] = []

    def kill_child_2():
        child = children()["consumer-2"]
        killed.append(child.pid)
        os.kill(child.pid, signal.SIGKILL)

    def child_2_gone():
        wait_for(lambda: "consumer-2" not in children(), 10, "consumer 2 to die")
        # Still up: the other child goes on.
        assert pv_get(cfgs[0].status_channel)["consumerId"] == 1

    caplog.set_level(logging.ERROR, logger="pvhpc")
    user = User(status_up(cfgs), kill_child_2, child_2_gone, ctrl_c)
    user.start()
    status = run_group(cfgs, Consumer, None, None)
    user.check()
    out = capsys.readouterr().out
    assert killed
    assert status == 1
    assert "consumer 2 ended unexpectedly (killed by signal 9); the others go on" in caplog.text
    assert "1 of 2 consumers failed: consumer 2 (killed by signal 9)" in out
    # The survivor's final report is printed.
    assert "consumer final report" in out


def test_a_fatal_line_of_both_children_is_printed_once_and_the_status_is_2(prefix, capsys):
    """Distributor options against a p4p source (no distributor plugin): each child's
    receiver finds out and its stage fails with one line; the parent prints it once."""
    channel = f"{prefix}:p4p"
    with P4pSource(channel):
        cfgs = configs(prefix, channel, distributor_updates=1)
        status = run_group(cfgs, Consumer, None, None)
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("pvapy-hpc-consumer")]
    assert status == 2
    assert len(errors) == 1, captured.err
    assert errors[0].startswith("pvapy-hpc-consumer: error: the server of ")
    assert channel in errors[0] and "pvapy-mirror-server" in errors[0]
    # Nothing was received: no table of zeros under the error.
    assert "final report" not in captured.out
    assert "failed" not in captured.out


def test_run_single_reports_a_fatal_line_and_returns_2(prefix, capsys):
    channel = f"{prefix}:p4p"
    with P4pSource(channel):
        cfg = configs(prefix, channel, n=1, distributor_updates=1)[0]
        status = run_single(cfg, Consumer)
    captured = capsys.readouterr()
    assert status == 2
    # (Lines of other tests' pvaccess threads, logging late into this process's stderr,
    # are not this command's.)
    errors = [line for line in captured.err.splitlines() if "error:" in line]
    assert len(errors) == 1 and errors[0].startswith("pvapy-hpc-consumer: error: the server of ")


def test_run_single_stops_on_sigint_with_a_final_report(source, prefix, capsys):
    channel = f"{prefix}:image"
    source.addRecord(channel, pva.PvObject(FRAME, {"uniqueId": 0}))
    cfg = configs(prefix, channel, n=1, report_format="json")[0]

    def publish():
        for i in range(1, 6):
            source.update(channel, pva.PvObject(FRAME, {"uniqueId": i}))

    user = User(status_up([cfg]), publish, status_up([cfg], 6), ctrl_c)
    user.start()
    status = run_single(cfg, Consumer)
    user.check()
    reports = final_reports(json_lines(capsys.readouterr().out), "consumerId")
    assert status == 0
    assert reports[1]["processorStats"]["nProcessed"] == 5


def test_exit_process_runs_atexit_handlers_and_flushes_the_streams():
    code = (
        "import atexit, sys\n"
        "from pvhpc.runtime.launcher import exit_process\n"
        "atexit.register(lambda: print('atexit ran'))\n"
        "sys.stdout.write('buffered out')\n"
        "sys.stderr.write('buffered err')\n"
        "exit_process(3)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONUNBUFFERED": ""},
    )
    assert done.returncode == 3
    assert done.stdout == "buffered outatexit ran\n"
    assert done.stderr == "buffered err"


def test_exit_process_with_a_closed_stdout_still_exits_with_its_status():
    code = (
        "import sys\n"
        "from pvhpc.runtime.launcher import exit_process\n"
        "sys.stdout.close()\n"
        "exit_process(4)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30)
    assert done.returncode == 4
    assert done.stderr == b""
