"""A consumer of a distributed set dies (SIGKILL): what it held is counted, by name.

Two consumers share one stream through the source's distributor (``-nc 2 -du 1``);
one is killed in the middle of the stream. The set's final report (the parent's
``consumer-set`` JSON line) must put every published frame in a counter:

    sent = processed + missed + rejected + errors + lost with the dead consumer

and, with ``--restart-failed``, the dead consumer comes back with the same id and
channels, takes frames again, and the equation still holds over both incarnations.
"""

from __future__ import annotations

import os
import signal

import pytest

from harness import (
    RECORDING_PROCESSOR,
    control,
    json_reports,
    pv_get,
    recorded,
    recording_consumer,
    sim_frames_sent,
    simulator,
    wait_all_receiving,
    wait_for,
)

pytestmark = pytest.mark.e2e

FRAMES, FPS = 1000, 200


def start_set(procs, prefix, tmp_path, *extra):
    """Two consumers sharing the stream through the distributor, ids recorded."""
    return recording_consumer(
        procs, prefix, tmp_path, "-nc", "2", "-du", "1", "-sqs", "100", *extra, name="consumers"
    )


def start_collector(procs, prefix, tmp_path):
    """A collector of the set's two outputs with a large cache (it could hold 500
    frames waiting for a dead producer) and a 1 s gap timeout."""
    return procs.start(
        "collector",
        "-ic",
        f"{prefix}:c:*:output",
        "-pid",
        "1,2",
        "-ccs",
        "500",
        "-cgt",
        "1",
        "-sc",
        f"{prefix}:col:*:status",
        "-pf",
        RECORDING_PROCESSOR,
        "-pc",
        "RecordingProcessor",
        "-pa",
        f'{{"outputFile": "{tmp_path}/collected-{{processorId}}.json"}}',
        "-rp",
        "0.5",
        "-rf",
        "json",
        name="collector",
    )


def start_sim(procs, prefix, frames=FRAMES):
    return simulator(procs, prefix, frames, FPS)


def kill_consumer_2(prefix: str) -> int:
    """SIGKILL consumer 2 once frames flow to it; its pid comes from its status."""
    st = wait_for(
        lambda: (s := pv_get(f"{prefix}:c:2:status"))["processorStats"]["nProcessed"] >= 100 and s,
        30,
        "consumer 2 to process 100 frames",
    )
    pid = st["pid"]
    os.kill(pid, signal.SIGKILL)
    return pid


def set_report(group) -> dict:
    reports = [r for r in json_reports(group) if r.get("kind") == "consumer-set"]
    assert reports, group.output()[-3000:]
    return reports[-1]


def assert_set_accounts_for(report: dict, sent: int) -> None:
    counted = sum(report[k] for k in ("processed", "missed", "rejected", "errors", "nLost"))
    assert counted == sent, report


def test_a_killed_consumer_costs_what_it_held_and_every_frame_is_counted(procs, prefix, tmp_path):
    group = start_set(procs, prefix, tmp_path)
    sim = start_sim(procs, prefix)
    wait_all_receiving([f"{prefix}:c:{i}:status" for i in (1, 2)], procs, 40)
    kill_consumer_2(prefix)
    group.wait_for_output(r"consumer 2 ended unexpectedly \(killed by signal 9\)", 20)
    sent = sim_frames_sent(sim, 60)
    # The survivor gets everything the distributor sends after the death.
    wait_for(
        lambda: pv_get(f"{prefix}:c:1:status")["processorStats"]["lastObjectId"] >= sent - 1,
        30,
        "the survivor to reach the end of the stream",
        procs=procs,
    )
    group.signal(signal.SIGINT)
    assert group.wait(30) == 1, group.output()[-3000:]

    report = set_report(group)
    assert_set_accounts_for(report, sent)
    lost = report["lostWithConsumer"]["2"]
    assert lost["n"] == report["nLost"] and lost["deaths"] == ["killed by signal 9"]
    assert report["nLost"] < 150, report  # its queue and what was in flight, not the rest
    survivor = recorded(f"{tmp_path}/c-ids-{{processorId}}.json", 1)["ids"]
    assert len(survivor) == len(set(survivor)) and set(survivor) <= set(range(1, sent + 1))
    out = group.output()
    line = f"lost with consumer 2: {lost['n']} frame(s)"
    assert line in out, out[-3000:]
    assert "1 of 2 consumers failed: consumer 2 (killed by signal 9)" in out
    assert "Traceback" not in out


def test_restart_failed_brings_the_set_back_to_full_strength(procs, prefix, tmp_path):
    group = start_set(procs, prefix, tmp_path, "--restart-failed")
    sim = start_sim(procs, prefix, frames=2000)  # long enough for both restarts
    wait_all_receiving([f"{prefix}:c:{i}:status" for i in (1, 2)], procs, 40)
    old_pid = kill_consumer_2(prefix)
    group.wait_for_output(r"consumer 2 ended unexpectedly \(killed by signal 9\); starting it", 20)

    def restarted_and_working():
        s = pv_get(f"{prefix}:c:2:status", timeout=2)
        return s["pid"] != old_pid and s["processorStats"]["nProcessed"] > 0 and s

    st = wait_for(restarted_and_working, 40, "consumer 2 to come back and take frames")
    assert st["restartStats"]["nRestarts"] == 1
    # A restart asked for on the control channel: consumer 1 drains, reports and is
    # started again at once; nothing of it is lost.
    pid1 = pv_get(f"{prefix}:c:1:status")["pid"]
    answer = control(f"{prefix}:c:1:control", "restart")
    assert answer.startswith("Restarting"), answer
    wait_for(
        lambda: (
            (s := pv_get(f"{prefix}:c:1:status", timeout=2))["pid"] != pid1
            and s["processorStats"]["nProcessed"] > 0
        ),
        40,
        "consumer 1 to come back after its restart command",
    )
    sent = sim_frames_sent(sim, 60)
    wait_for(
        lambda: (
            max(pv_get(f"{prefix}:c:{i}:status")["processorStats"]["lastObjectId"] for i in (1, 2))
            >= sent - 1
        ),
        30,
        "the set to reach the end of the stream",
        procs=procs,
    )
    group.signal(signal.SIGINT)
    assert group.wait(30) == 0, group.output()[-3000:]

    report = set_report(group)
    assert_set_accounts_for(report, sent)
    # The second incarnation processed frames of its own, after the death.
    second = recorded(f"{tmp_path}/c-ids-{{processorId}}.json", 2)["ids"]
    first_ids = recorded(f"{tmp_path}/c-ids-{{processorId}}.json", 1)["ids"]
    assert second and not set(second) & set(first_ids)
    finals = {
        r["consumerId"]: r for r in json_reports(group) if r.get("final") and "consumerId" in r
    }
    assert finals[2]["restartStats"]["nRestarts"] == 1
    assert "Traceback" not in group.output()


def test_a_collector_does_not_wait_for_a_dead_producer(procs, prefix, tmp_path):
    """Downstream of a death: after the gap timeout the collector stops waiting for
    the dead producer's ids, releases the survivor's frames in order and counts
    the ids that never come as missed, naming the producer."""
    group = start_set(procs, prefix, tmp_path)
    collector = start_collector(procs, prefix, tmp_path)
    wait_all_receiving([f"{prefix}:col:1:status"], procs, 40)
    sim = start_sim(procs, prefix)
    wait_all_receiving([f"{prefix}:c:{i}:status" for i in (1, 2)], procs, 40)
    kill_consumer_2(prefix)
    collector.wait_for_output(
        rf"producer 2 \({prefix}:c:2:output\) sent nothing for 1 s while the others did", 20
    )
    sent = sim_frames_sent(sim, 60)
    wait_for(
        lambda: pv_get(f"{prefix}:col:1:status")["collectorStats"]["lastReleasedId"] >= sent - 1,
        30,
        "the collector to release the end of the stream",
        procs=procs,
    )
    assert collector.stop() == 0
    group.signal(signal.SIGINT)
    assert group.wait(30) == 1

    final = [r for r in json_reports(collector) if r.get("final")][-1]
    stats, producer2 = final["processorStats"], final["producerStats"]["producer2"]
    # Left out of the wait; the ids it never published (it may have published all it
    # had) were counted as missed while it was silent.
    assert producer2["silent"] and producer2["nMissedWhileSilent"] <= stats["nMissed"], producer2
    collected = recorded(f"{tmp_path}/collected-{{processorId}}.json", 1)["ids"]
    assert collected == sorted(set(collected))  # in order, once each
    # The merged stream: every id up to the last one released is processed or missed.
    assert stats["nProcessed"] == len(collected)
    assert stats["nProcessed"] + stats["nMissed"] == collected[-1] - collected[0] + 1, stats
    assert final["receiverStats"]["nRejected"] == 0


def test_a_killed_consumer_of_one_of_two_distributor_sets_costs_only_what_it_held(
    procs, prefix, tmp_path
):
    """Two sets share the stream (-nds 2, one frame each in turn); set A's two consumers
    get copies of its frames. Killing one of them loses nothing its set-mate did not
    process: its set's report must not count the other set's frames as lost with it."""
    common = ["-ic", f"{prefix}:image", "-du", "1", "-nds", "2", "-dg", "g", "-sqs", "100"]
    a = recording_consumer(procs, prefix, tmp_path, *common, "-nc", "2", "-ds", "A",
                           name="set-a")  # fmt: skip
    b = recording_consumer(procs, prefix, tmp_path, *common, "-id", "3", "-ds", "B",
                           name="set-b")  # fmt: skip
    sim = start_sim(procs, prefix)
    wait_all_receiving([f"{prefix}:c:{i}:status" for i in (1, 2, 3)], procs, 40)
    kill_consumer_2(prefix)
    a.wait_for_output(r"consumer 2 ended unexpectedly \(killed by signal 9\)", 20)
    sent = sim_frames_sent(sim, 60)
    for i in (1, 3):
        wait_for(
            lambda i=i: (
                pv_get(f"{prefix}:c:{i}:status")["processorStats"]["lastObjectId"] >= sent - 1
            ),
            30,
            f"consumer {i} to reach the end of the stream",
            procs=procs,
        )
    a.signal(signal.SIGINT)
    b.signal(signal.SIGINT)
    assert a.wait(30) == 1 and b.wait(30) == 0
    report = set_report(a)
    survivor = recorded(f"{tmp_path}/c-ids-{{processorId}}.json", 1)["ids"]
    # Set A's share, all of it: every other id (which half depends on the set order).
    assert survivor[0] in (1, 2) and survivor == list(range(survivor[0], sent + 1, 2)), survivor
    # Every frame of the set was processed by the survivor: nothing is lost with the
    # dead one (before, the other set's 500 frames were counted as lost with it).
    assert report["lostWithConsumer"]["2"]["n"] == 0 and report["nLost"] == 0, report
