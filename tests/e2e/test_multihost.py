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

import os
import shutil
import subprocess
import sys
import uuid

import pvaccess as pva
import pytest

from harness import ROOT, Proc, accounted, json_reports, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.netns]

SUBNET = "10.213.7"
HOSTS = {"sim": f"{SUBNET}.1", "cons": f"{SUBNET}.2", "col": f"{SUBNET}.3"}


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20, check=check)


def _why_not() -> str | None:
    """Why network namespaces cannot be used here, or None if they can."""
    if sys.platform != "linux":
        return "network namespaces are Linux only"
    if os.geteuid() != 0:
        return "creating network namespaces needs root"
    if shutil.which("ip") is None:
        return "needs the ip command (iproute2) for ip netns"
    probe = f"pvhpc-probe-{uuid.uuid4().hex[:6]}"
    done = _ip("netns", "add", probe, check=False)
    if done.returncode != 0:
        return f"ip netns add failed: {done.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


@pytest.fixture
def hosts():
    """Three namespaces (sim, cons, col) on a bridge in a fourth; removed at teardown.

    Yields ``{host: namespace name}``.
    """
    reason = _why_not()
    if reason:
        pytest.skip(reason)
    tag = uuid.uuid4().hex[:6]
    hub = f"pvhpc-{tag}-hub"
    names = {h: f"pvhpc-{tag}-{h}" for h in HOSTS}
    created = []
    try:
        _ip("netns", "add", hub)
        created.append(hub)
        _ip("-n", hub, "link", "add", "br0", "type", "bridge")
        _ip("-n", hub, "link", "set", "br0", "up")
        for host, ns in names.items():
            _ip("netns", "add", ns)
            created.append(ns)
            # Both ends are created inside the namespaces: nothing touches the host's.
            _ip("link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", f"v-{host}", "netns", hub)  # fmt: skip
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "addr", "add", f"{HOSTS[host]}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", hub, "link", "set", f"v-{host}", "master", "br0")
            _ip("-n", hub, "link", "set", f"v-{host}", "up")
        yield names
    finally:
        for ns in reversed(created):
            _ip("netns", "del", ns, check=False)


def host_env(host: str) -> dict:
    """EPICS settings of one namespace: search its peers, serve on its own address."""
    own = HOSTS[host]
    peers = " ".join(addr for h, addr in HOSTS.items() if h != host)
    return {
        "EPICS_PVA_ADDR_LIST": peers,
        "EPICS_PVA_AUTO_ADDR_LIST": "NO",
        "EPICS_PVAS_INTF_ADDR_LIST": own,
        "EPICS_PVAS_BEACON_ADDR_LIST": peers,
        "EPICS_PVAS_AUTO_BEACON_ADDR_LIST": "NO",
        "EPICS_CA_ADDR_LIST": own,
        "EPICS_CA_AUTO_ADDR_LIST": "NO",
        "EPICS_CAS_INTF_ADDR_LIST": own,
        "EPICS_CAS_BEACON_ADDR_LIST": own,
        "EPICS_CAS_AUTO_BEACON_ADDR_LIST": "NO",
    }


class NsProc(Proc):
    """``python -m pvhpc <args>`` run inside a network namespace (``ip netns exec``)."""

    def __init__(self, namespace: str, host: str, args: list[str], name: str):
        self.args = args
        self.name = name
        self.log = open(os.path.join(os.environ.get("TMPDIR", "/tmp"), f"pvhpc-{name}-{uuid.uuid4().hex[:6]}.log"), "w+b")  # fmt: skip
        env = dict(os.environ, PYTHONUNBUFFERED="1", **host_env(host))
        env["PYTHONPATH"] = os.path.join(ROOT, "src")
        # ip netns exec execs the command: the pid is Python's, signals go straight to it.
        self.popen = subprocess.Popen(
            ["ip", "netns", "exec", namespace, sys.executable, "-m", "pvhpc", *args],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        self.expect_exit = False


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
        proc = NsProc(hosts[host], host, [str(a) for a in args], name)
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
