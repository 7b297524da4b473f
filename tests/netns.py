"""Network namespaces as hosts, for tests that span several machines.

:func:`hosts_on_a_bridge` makes one namespace per host, each with one address on a
private subnet, joined by veth pairs on a bridge that lives in a namespace of its
own: every address exists only inside those namespaces, and the machine's own
interfaces carry none of the traffic. :func:`host_env` gives a host the EPICS
settings a beamline would give a real machine; :class:`NsProc` runs ``python -m
pvhpc`` inside a namespace. Needs root and ``ip netns`` (iproute2):
:func:`why_not` says why they cannot be used, for a skip.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator

from harness import ROOT, Proc


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20, check=check)


def why_not() -> str | None:
    """Why network namespaces cannot be used here, or None if they can."""
    if sys.platform != "linux":
        return "network namespaces are Linux only"
    if os.geteuid() != 0:
        return "creating network namespaces needs root"
    if shutil.which("ip") is None:
        return "needs the ip command (iproute2) for ip netns"
    probe = f"pvhpc-probe-{uuid.uuid4().hex[:6]}"
    done = ip("netns", "add", probe, check=False)
    if done.returncode != 0:
        return f"ip netns add failed: {done.stderr.strip()}"
    ip("netns", "del", probe, check=False)
    return None


@contextlib.contextmanager
def hosts_on_a_bridge(addresses: dict[str, str]) -> Iterator[dict[str, str]]:
    """One namespace per host of ``addresses`` (host -> its address on a /24), on a
    bridge in one more namespace; yields ``{host: namespace name}``. Everything is
    removed however the block ends."""
    tag = uuid.uuid4().hex[:6]
    hub = f"pvhpc-{tag}-hub"
    names = {h: f"pvhpc-{tag}-{h}" for h in addresses}
    created = []
    try:
        ip("netns", "add", hub)
        created.append(hub)
        ip("-n", hub, "link", "add", "br0", "type", "bridge")
        ip("-n", hub, "link", "set", "br0", "up")
        for host, ns in names.items():
            ip("netns", "add", ns)
            created.append(ns)
            # Both ends are created inside the namespaces: nothing touches the host's.
            ip("link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", f"v-{host}", "netns", hub)  # fmt: skip
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "addr", "add", f"{addresses[host]}/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
            ip("-n", hub, "link", "set", f"v-{host}", "master", "br0")
            ip("-n", hub, "link", "set", f"v-{host}", "up")
        yield names
    finally:
        for ns in reversed(created):
            ip("netns", "del", ns, check=False)


def pids_in(namespace: str) -> list[int]:
    """The processes running in a namespace."""
    done = ip("netns", "pids", namespace, check=False)
    return [int(p) for p in done.stdout.split()]


def host_env(own: str, peers: list[str]) -> dict:
    """EPICS settings of one host: search its peers, serve on its own address."""
    others = " ".join(peers)
    return {
        "EPICS_PVA_ADDR_LIST": others,
        "EPICS_PVA_AUTO_ADDR_LIST": "NO",
        "EPICS_PVAS_INTF_ADDR_LIST": own,
        "EPICS_PVAS_BEACON_ADDR_LIST": others,
        "EPICS_PVAS_AUTO_BEACON_ADDR_LIST": "NO",
        "EPICS_CA_ADDR_LIST": own,
        "EPICS_CA_AUTO_ADDR_LIST": "NO",
        "EPICS_CAS_INTF_ADDR_LIST": own,
        "EPICS_CAS_BEACON_ADDR_LIST": own,
        "EPICS_CAS_AUTO_BEACON_ADDR_LIST": "NO",
    }


class NsProc(Proc):
    """``python -m pvhpc <args>`` run inside a network namespace (``ip netns exec``),
    with ``env`` added to the environment."""

    def __init__(self, namespace: str, args: list[str], name: str, env: dict | None = None):
        self.args = args
        self.name = name
        self.log = open(os.path.join(os.environ.get("TMPDIR", "/tmp"), f"pvhpc-{name}-{uuid.uuid4().hex[:6]}.log"), "w+b")  # fmt: skip
        full_env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
        full_env["PYTHONPATH"] = os.path.join(ROOT, "src")
        # ip netns exec execs the command: the pid is Python's, signals go straight to it.
        self.popen = subprocess.Popen(
            ["ip", "netns", "exec", namespace, sys.executable, "-m", "pvhpc", *args],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=full_env,
            start_new_session=True,
        )
        self.expect_exit = False
