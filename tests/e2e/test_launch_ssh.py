"""One workflow over three hosts through ssh: ``pvhpc run --launcher ssh``.

Each host is a network namespace running a real OpenSSH server (Debian's
openssh-server) that accepts a key made by the test; ``pvhpc run`` itself runs in
a fourth namespace, as on a beamline's control machine, and reaches the hosts with
the system's ssh and a config file of the test's (``ssh-options: [-F, …]``). The
workflow: a simulator on node-a, 4 consumers sharing its stream (2 on node-a, 2 on
node-b), a collector on node-c. The summary's loss check and every stage's JSON
reports, streamed back over ssh, must account for every frame; a host whose sshd
dies mid-run is reported as a failed stage while the others stop cleanly.

Needs root, ``ip netns`` and openssh-server (``apt-get install openssh-server``);
skipped with the reason otherwise.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys

import pytest

from harness import wait_for
from netns import NsProc, hosts_on_a_bridge, pids_in, why_not
from spread_workflow import frames_sent, set_lines, spread_workflow, stage_reports

pytestmark = [pytest.mark.e2e, pytest.mark.netns]

SUBNET = "10.213.9"
NODES = {"node-a": f"{SUBNET}.1", "node-b": f"{SUBNET}.2", "node-c": f"{SUBNET}.3"}
HEAD = {"head": f"{SUBNET}.9"}
SSHD = "/usr/sbin/sshd"


def _why_not_ssh() -> str | None:
    reason = why_not()
    if reason:
        return reason
    for tool in (SSHD, "ssh", "ssh-keygen"):
        if shutil.which(tool) is None:
            return f"needs {tool} (apt-get install openssh-server openssh-client)"
    return None


class Cluster:
    """The namespaces, their sshd servers and the ssh config that reaches them."""

    def __init__(self, names: dict[str, str], tmp):
        self.names = names
        self.dir = tmp
        self.sshd: dict[str, subprocess.Popen] = {}
        self.config = str(tmp / "ssh_config")

    def start(self) -> None:
        keygen = ["ssh-keygen", "-q", "-t", "ed25519", "-N", ""]
        subprocess.run([*keygen, "-f", str(self.dir / "client_key")], check=True)
        subprocess.run([*keygen, "-f", str(self.dir / "host_key")], check=True)
        shutil.copy(self.dir / "client_key.pub", self.dir / "authorized_keys")
        # sshd wants its privilege separation directory (Debian: /run/sshd).
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        hosts = []
        for node, address in NODES.items():
            conf = self.dir / f"sshd_{node}.conf"
            conf.write_text(
                f"ListenAddress {address}\nHostKey {self.dir}/host_key\n"
                f"AuthorizedKeysFile {self.dir}/authorized_keys\n"
                "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
                "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
                f"PidFile {self.dir}/sshd_{node}.pid\n"
            )
            log = open(self.dir / f"sshd_{node}.log", "wb")  # noqa: SIM115
            self.sshd[node] = subprocess.Popen(
                ["ip", "netns", "exec", self.names[node], SSHD, "-D", "-e", "-f", str(conf)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            hosts.append(f"Host {node}\n  HostName {address}\n")
        (self.dir / "ssh_config").write_text(
            "".join(hosts) + f"Host *\n  User root\n  IdentityFile {self.dir}/client_key\n"
            "  IdentitiesOnly yes\n  StrictHostKeyChecking accept-new\n"
            f"  UserKnownHostsFile {self.dir}/known_hosts\n  ConnectTimeout 5\n"
        )
        for node in NODES:
            wait_for(lambda n=node: self.ssh_ok(n), 20, f"sshd on {node}")

    def ssh_ok(self, node: str) -> bool:
        cmd = ["ip", "netns", "exec", self.names["head"], "ssh", "-F", self.config]
        done = subprocess.run([*cmd, node, "true"], capture_output=True, timeout=20)
        return done.returncode == 0

    def kill_sshd(self, node: str) -> int:
        """Kill the sshd of ``node`` and every connection it serves (the listener and
        its per-connection processes), as a host whose ssh service dies."""
        killed = 0
        for pid in pids_in(self.names[node]):
            try:
                with open(f"/proc/{pid}/comm") as f:
                    if f.read().strip() != "sshd":
                        continue
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except (OSError, ProcessLookupError):
                pass
        return killed

    def stage_pids(self, node: str) -> list[int]:
        """The pvhpc processes still running on ``node``."""
        out = []
        for pid in pids_in(self.names[node]):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if b"pvhpc" in f.read():
                        out.append(pid)
            except OSError:
                pass
        return out

    def stop(self) -> None:
        for proc in self.sshd.values():
            if proc.poll() is None:
                proc.terminate()
                proc.wait(10)
        # Whatever is left in our namespaces was started by this test.
        for ns in self.names.values():
            for pid in pids_in(ns):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


@pytest.fixture
def cluster(tmp_path):
    reason = _why_not_ssh()
    if reason:
        pytest.skip(reason)
    with hosts_on_a_bridge({**NODES, **HEAD}) as names:
        c = Cluster(names, tmp_path)
        try:
            c.start()
            yield c
        finally:
            c.stop()


def workflow(cluster: Cluster, **kw) -> str:
    hosts = "".join(f"    {n}: {a}\n" for n, a in NODES.items())
    text = spread_workflow(
        "ssh",
        ["node-a", "node-b"],
        "node-c",
        "node-a",
        extra=f"ssh-options: [-F, {cluster.config}]\nnetwork:\n  hosts:\n{hosts}",
        **kw,
    )
    path = cluster.dir / "spread.yaml"
    path.write_text(text)
    return str(path)


def run_on_head(cluster: Cluster, procs, path: str, log_dir, prefix: str) -> NsProc:
    """``pvhpc run`` on the head namespace (the control machine)."""
    args = [
        "run", path, "--channel-prefix", f"{prefix}:", "--view", "none",
        "--log-dir", str(log_dir), "--quiet-time", "2",
    ]  # fmt: skip
    proc = NsProc(cluster.names["head"], args, "pvhpc-run")
    procs.procs.append(proc)
    return proc


def test_ssh_spreads_a_consumer_set_over_two_hosts(cluster, procs, tmp_path, prefix):
    logs = tmp_path / "logs"
    run = run_on_head(cluster, procs, workflow(cluster), logs, prefix)
    status = run.wait(90)
    out = run.output()
    sys.stdout.write(out)
    assert status == 0, out
    sent = frames_sent(str(logs))
    assert sent > 0
    sets = set_lines(out)
    assert sets["process@node-a + process@node-b (distributor)"] == ("ok", sent, sent)
    assert sets["collect@node-c 1"] == ("ok", sent, sent)
    assert "RESULT: ok, every frame is accounted for" in out
    # Every stage's JSON reports came back over ssh: each host's consumers, in
    # consecutive ids, processed their share, and together every frame.
    a = stage_reports(str(logs), "process_node-a", "consumerId")
    b = stage_reports(str(logs), "process_node-b", "consumerId")
    assert sorted(a) == [1, 2] and sorted(b) == [3, 4]
    consumers = {**a, **b}
    assert all(r.get("final") for r in consumers.values())
    assert all(r["processorStats"]["nProcessed"] > 0 for r in consumers.values())
    assert sum(r["processorStats"]["nProcessed"] for r in consumers.values()) == sent
    assert all(r["processorStats"]["nMissed"] == 0 for r in consumers.values())
    collector = stage_reports(str(logs), "collect", "collectorId")[1]
    assert collector.get("final") and collector["processorStats"]["nProcessed"] == sent
    # The stages' logs came back prefixed with the stage and its host.
    err = (logs / "process_node-b.err").read_text()
    assert "[process@node-b] " in err and "consumer 3: monitoring" in err
    for node in NODES:
        assert cluster.stage_pids(node) == [], f"pvhpc processes left on {node}"


def test_a_host_whose_sshd_dies_is_a_failed_stage(cluster, procs, tmp_path, prefix):
    logs = tmp_path / "logs"
    run = run_on_head(cluster, procs, workflow(cluster, frames_s=8, fps=25), logs, prefix)

    def node_b_processing():
        try:
            reports = stage_reports(str(logs), "process_node-b", "consumerId")
        except OSError:
            return False
        return len(reports) == 2 and all(
            r["processorStats"]["nProcessed"] > 5 for r in reports.values()
        )

    wait_for(node_b_processing, 60, "node-b's consumers to process frames", procs=procs)
    assert cluster.kill_sshd("node-b") >= 2  # the listener and its connections
    status = run.wait(90)
    out = run.output()
    sys.stdout.write(out)
    assert status == 1, out
    lost = "ssh connection to node-b lost (ssh exit status 255)"
    assert f"stage 'process@node-b' failed: {lost}" in out
    assert f"RESULT: stage(s) failed: process@node-b ({lost})" in out
    # The rest stopped cleanly, with final reports; node-b's consumers were stopped
    # on their host when their ssh connection went.
    a = stage_reports(str(logs), "process_node-a", "consumerId")
    assert sorted(a) == [1, 2] and all(r.get("final") for r in a.values())
    collector = stage_reports(str(logs), "collect", "collectorId")[1]
    assert collector.get("final")
    sets = set_lines(out)
    mark, published, _ = sets["process@node-a + process@node-b (distributor)"]
    assert published == frames_sent(str(logs)) and mark in ("ok", "loss"), out
    wait_for(lambda: cluster.stage_pids("node-b") == [], 30, "node-b's stages to end")
    for node in ("node-a", "node-c"):
        assert cluster.stage_pids(node) == [], f"pvhpc processes left on {node}"
