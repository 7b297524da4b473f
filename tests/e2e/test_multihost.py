"""Several hosts, end to end: the simulator, two distributing consumers and a
collector each in a network namespace of their own, joined by veth pairs on a
bridge that lives in a fourth namespace. Every address is private and exists only
inside those namespaces; the host's own interfaces carry none of this traffic.

Each "host" names its peers in ``EPICS_PVA_ADDR_LIST`` and binds its servers to its
own address (``EPICS_PVAS_INTF_ADDR_LIST``), as a beamline would configure real
machines. The test checks the loss invariant at every stage: frames sent =
processed + missed + rejected + errors, for the consumer set and for the collector.

Needs root and ``ip netns`` (iproute2); skipped with the reason otherwise. The
namespaces are removed however the test ends.
"""

from __future__ import annotations

import pvaccess as pva
import pytest

from harness import Proc, accounted, json_reports, wait_for
from netns import NsProc, host_env, hosts_on_a_bridge, why_not

pytestmark = [pytest.mark.e2e, pytest.mark.netns]

SUBNET = "10.213.7"
HOSTS = {"sim": f"{SUBNET}.1", "cons": f"{SUBNET}.2", "col": f"{SUBNET}.3"}


@pytest.fixture
def hosts():
    """Three namespaces (sim, cons, col) on a bridge in a fourth; removed at teardown.

    Yields ``{host: namespace name}``.
    """
    reason = why_not()
    if reason:
        pytest.skip(reason)
    with hosts_on_a_bridge(HOSTS) as names:
        yield names


def latest(proc: Proc, id_name: str) -> dict:
    """The latest JSON report of each stage id a process printed."""
    out: dict = {}
    for r in json_reports(proc):
        if id_name in r:  # the parent's set report (kind consumer-set) has no stage id
            out[r[id_name]] = r
    return out


def test_sim_consumers_collector_on_three_hosts(procs, hosts, prefix):
    image = f"{prefix}:image"
    common = ["-rp", "0.5", "-rf", "json"]

    def start(host, name, *args):
        own = HOSTS[host]
        env = host_env(own, [a for a in HOSTS.values() if a != own])
        proc = NsProc(hosts[host], [str(a) for a in args], name, env)
        procs.procs.append(proc)
        return proc

    consumers = start(
        "cons", "consumers", "consumer", "-ic", image, "-nc", 2, "-du", 1, "-sqs", 100,
        "-oc", f"{prefix}:c:*:output", "-sc", f"{prefix}:c:*:status", *common,
    )  # fmt: skip
    collector = start(
        "col", "collector", "collector", "-pid", "1,2", "-ic", f"{prefix}:c:*:output",
        "-sqs", 100, "-ccs", 20, "-sc", f"{prefix}:col:*:status", *common,
    )  # fmt: skip

    def collector_sees_both():
        r = latest(collector, "collectorId").get(1)
        return r and all(p["nReceived"] >= 1 for p in r["producerStats"].values())

    wait_for(collector_sees_both, 40, "the collector to reach both consumers", procs=procs)
    sim = start(
        "sim", "sim", "sim", "-cn", image, "-nx", 64, "-ny", 64, "-fps", 100, "-rt", 6,
        "-std", 4, "-shd", 120,
    )  # fmt: skip

    def consumers_see_sim():
        r = latest(consumers, "consumerId")
        return len(r) == 2 and all(x["receiverStats"]["nReceived"] >= 1 for x in r.values())

    wait_for(consumers_see_sim, 40, "both consumers to reach the simulator", procs=procs)
    sent = int(sim.wait_for_output(r"done, sent (\d+) frames", 60).group(1))

    def accounted_for():
        c = latest(consumers, "consumerId")
        col = latest(collector, "collectorId").get(1)
        return sum(accounted(r) for r in c.values()) >= sent and col and accounted(col) >= sent

    wait_for(accounted_for, 30, f"{sent} frames accounted for downstream", procs=procs)
    # The simulator's channel lives only on its namespace's address: the host's own
    # (loopback) network never sees it.
    ch = pva.Channel(image)
    ch.setTimeout(1.0)
    with pytest.raises(pva.PvaException):
        ch.get("field(uniqueId)")

    assert collector.stop() == 0
    assert consumers.stop() == 0
    sim.stop()
    cons_final = {k: r for k, r in latest(consumers, "consumerId").items() if r.get("final")}
    col_final = latest(collector, "collectorId")[1]
    assert sorted(cons_final) == [1, 2] and col_final.get("final")
    # published = processed + missed + rejected + errors, at each stage
    assert sum(accounted(r) for r in cons_final.values()) == sent
    assert accounted(col_final) == sent
    assert sum(r["processorStats"]["nProcessed"] for r in cons_final.values()) == sent
    assert col_final["processorStats"]["nProcessed"] == sent
    assert all(r["processorStats"]["nProcessed"] > 0 for r in cons_final.values())
