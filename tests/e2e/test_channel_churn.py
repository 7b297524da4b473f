"""Crashes where pvaccess threads meet Python: channels replaced while they
connect, and a process ending while its sources vanish.

Both were found as rare failures of whole-workflow tests (a collector that died
with SIGSEGV, or ended with SIGABRT instead of status 0); here each is provoked
often enough that the test fails every time without the fix.
"""

from __future__ import annotations

import json
import logging
import os
import signal

import pytest

from harness import ROOT, pv_get, unique_prefix, wait_for

pytestmark = pytest.mark.e2e

SRC = os.path.join(ROOT, "src")
# channel_churn.py lives next to this file; producers.py is the collector benchmark's source.
CHURN_ENV = {"PYTHONPATH": os.pathsep.join([os.path.dirname(__file__), SRC])}
PRODUCERS_ENV = {"PYTHONPATH": os.pathsep.join([os.path.join(ROOT, "benchmarks"), SRC])}


def test_receivers_survive_channels_coming_and_going(procs, prefix):
    # A receiver that is not connected moves its monitor to a fresh channel now and
    # then; the channel it replaces may be connecting at that moment, in a pvaccess
    # thread. 8 channels come and go every few ms for 12 s while 8 receivers chase
    # them: before the fix the receiving process died within 3 s.
    procs.start("churn", prefix, 8, 14, name="churn", module="channel_churn", env=CHURN_ENV)
    receivers = procs.start(
        "receive", prefix, 8, 12, name="receivers", module="channel_churn", env=CHURN_ENV
    )
    status = receivers.wait(60)
    assert status == 0, f"receivers ended with {status}: {receivers.output()[-2000:]}"
    last = [line for line in receivers.output().splitlines() if line.startswith("{")][-1]
    counts = json.loads(last)
    # The channels did come and go, and the receivers did follow them.
    assert counts["connects"] >= 16, counts
    assert counts["channels"] >= 16, counts


def test_a_collector_stopped_as_its_producers_vanish_exits_cleanly(procs):
    # pvaccess threads report the lost connections while the process ends; one that
    # calls into an interpreter shutting down aborted the process (8 of 10 times
    # with the interpreter's own exit, measured).
    for attempt in range(1, 9):
        prefix = unique_prefix()
        status = f"{prefix}:col:status"
        producers = procs.start(
            "--channel-prefix", f"{prefix}:", "-np", 8, "-nx", 32, "-ny", 32,
            "-fps", 500, "-rt", 60, "-std", 0,
            name=f"producers{attempt}", module="producers", env=PRODUCERS_ENV,
        )  # fmt: skip
        collector = procs.start(
            "collector", "-id", 1, "-pid", "range(1,9)", "-ic", f"{prefix}:*",
            "-oc", f"{prefix}:col:output", "-sc", status, "-rp", 0.5, "-ccs", 100,
            name=f"collector{attempt}",
        )  # fmt: skip
        wait_for(
            lambda status=status: all(
                v["nReceived"] > 0 for v in pv_get(status)["producerStats"].values()
            ),
            30,
            "the collector to receive from all 8 producers",
            procs=procs,
        )
        collector.signal(signal.SIGINT)
        producers.signal(signal.SIGKILL)
        producers.wait(10)
        code = collector.wait(30)
        assert code == 0, (
            f"attempt {attempt}: the collector ended with {code}:\n" + (collector.output()[-2000:])
        )


def test_a_receiver_waiting_for_an_absent_source_stops_making_channels(monkeypatch, caplog):
    # Replaced channels are kept for good, so their number is bounded: past the
    # bound the receiver waits on the last channel and says so, once.
    from pvhpc import receiver
    from pvhpc.counting import IdTracker

    caplog.set_level(logging.INFO, logger="pvhpc")
    monkeypatch.setattr(receiver, "PROBE_FIRST", 0.0)
    monkeypatch.setattr(receiver, "MAX_CHANNELS", 3)
    r = receiver.Receiver(
        f"{unique_prefix()}:absent", "field()", lambda pv, oid: None, IdTracker(1)
    )
    r.start()
    try:
        for _ in range(10):
            r.supervise()
    finally:
        r.stop()
    assert r._generation == 3 and len(r._retired) == 2
    said = [m for m in caplog.messages if "tried 3 fresh channels" in m]
    assert len(said) == 1, caplog.messages
