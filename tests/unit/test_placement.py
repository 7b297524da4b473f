"""Placement (:mod:`pvhpc.workflow.placement`): ``host:`` and the launcher keys of a
workflow file, consumer sets split over hosts, and the address lists that join the
hosts. A bad placement is one line naming the file, the line and the stage."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from harness import ROOT
from pvhpc.counting import expected_offset
from pvhpc.workflow import WorkflowError, load_workflow
from pvhpc.workflow.launch import SshLauncher
from pvhpc.workflow.placement import network_env
from pvhpc.workflow.slurm import SlurmLauncher, batch_script

SPREAD = """\
launcher: ssh
network:
  hosts: {{a: 10.1.0.1, b: 10.1.0.2, c: 10.1.0.3}}
stages:
  process:
    type: consumer
    input-channel: image
    output-channel: "p:*:output"
    n-consumers: {n}
    distributor-updates: {u}
    host: {hosts}
  collect:
    type: collector
    input-channel: "p:*:output"
    producer-id-list: {ids}
    host: c
  sim:
    type: sim
    channel-name: image
    host: a
"""


def write(tmp_path, text: str) -> str:
    path = tmp_path / "wf.yaml"
    path.write_text(textwrap.dedent(text))
    return str(path)


def spread(tmp_path, n=4, u=1, hosts="[a, b]", **kw):
    ids = list(range(1, n + 1))
    return load_workflow(write(tmp_path, SPREAD.format(n=n, u=u, hosts=hosts, ids=ids)), **kw)


def option(stage, name: str):
    values = [a.split("=", 1)[1] for a in stage.argv if a.startswith(f"--{name}=")]
    return values[-1] if values else None


def test_four_consumers_on_two_hosts_are_two_runs_of_ids(tmp_path):
    wf = spread(tmp_path)
    a, b = [s for s in wf.stages if s.group == "process"]
    assert (a.name, a.host, b.name, b.host) == ("process@a", "a", "process@b", "b")
    assert [i.stage_id for i in a.instances] == [1, 2]
    assert [i.stage_id for i in b.instances] == [3, 4]
    assert (option(a, "consumer-id"), option(a, "n-consumers")) == ("1", "2")
    assert (option(b, "consumer-id"), option(b, "n-consumers")) == ("3", "2")
    # The offset of the set of 4, not of a part's 2: (4 - 1) * 1 + 1.
    assert option(a, "oid-offset") == option(b, "oid-offset") == "4"
    assert a.args.oid_offset == 4 == expected_offset(0, 4, 1)
    # Each part serves only its consumers' channels; the distributor and the loss
    # check see one set of 4.
    assert {e.name for e in b.provides} >= {"p:3:output", "p:4:output"}
    assert "p:1:output" not in {e.name for e in b.provides}
    (cset,) = [c for c in wf.consumer_sets() if c.distributor is not None]
    assert [(s.name, i) for s, i in cset.members] == [
        ("process@a", 1), ("process@a", 2), ("process@b", 3), ("process@b", 4),
    ]  # fmt: skip
    assert cset.label == "process@a + process@b (distributor)"
    assert [s.label for s in wf.stages if s.group != "process"] == ["collect@c", "sim@a"]


def test_uneven_split_and_repeated_hosts(tmp_path):
    wf = spread(tmp_path, n=5, u=2, hosts="[a, a, b]")
    parts = [s for s in wf.stages if s.group == "process"]
    assert [s.name for s in parts] == ["process@a#1", "process@a#2", "process@b"]
    assert [[i.stage_id for i in s.instances] for s in parts] == [[1, 2], [3, 4], [5]]
    assert {option(s, "oid-offset") for s in parts} == {str((5 - 1) * 2 + 1)}


def test_no_distributor_needs_no_offset(tmp_path):
    text = SPREAD.format(n=2, u=1, hosts="[a, b]", ids=[1, 2]).replace(
        "    distributor-updates: 1\n", ""
    )
    wf = load_workflow(write(tmp_path, text))
    assert all(option(s, "oid-offset") is None for s in wf.stages if s.group == "process")


def test_local_launcher_ignores_the_placement(tmp_path):
    wf = spread(tmp_path, launcher="local")
    assert [s.name for s in wf.stages] == ["process", "collect", "sim"]
    assert all(s.host is None for s in wf.stages)
    assert wf.network == "loopback"
    assert any("host: placement ignored" in n for n in wf.notes)


@pytest.mark.parametrize(
    "hosts, words",
    [
        ("[a, b, c, a, b]", "5 hosts for 4 consumer(s)"),
        ("[]", "host: an empty list"),
        ("{x: 1}", "expected a host name or a node index"),
        ("[0, 1]", "host: 0 is a Slurm node index; the ssh launcher needs host names"),
        ("'a b'", "'a b' is not a host name"),
    ],
)
def test_bad_consumer_placement(tmp_path, hosts, words):
    with pytest.raises(WorkflowError) as info:
        spread(tmp_path, hosts=hosts)
    text = str(info.value)
    assert text.startswith(f"{tmp_path}/wf.yaml:11: stage 'process': "), text
    assert words in text and "\n" not in text


@pytest.mark.parametrize(
    "change, line, words",
    [
        (("    host: c\n", "    host: [c, a]\n"), 16, "a collector stage runs on one host"),
        (("    host: a\n", ""), 17, "stage 'sim': no host: (the ssh launcher"),
        (("launcher: ssh", "launcher: pbs"), 1, "launcher: 'pbs' is not one of local, ssh, slurm"),
        (("c: 10.1.0.3", "c: 10.1.0.3, d: 10.1.0.4"), None, "hosts: 'd' is the host of no stage"),
        (("network:\n", "network:\n  hostz: {}\n"), 2, "network: unknown key 'hostz'"),
    ],
)
def test_bad_placement_is_one_line(tmp_path, change, line, words):
    text = SPREAD.format(n=4, u=1, hosts="[a, b]", ids=[1, 2, 3, 4]).replace(*change)
    path = write(tmp_path, text)
    with pytest.raises(WorkflowError) as info:
        load_workflow(path)
    assert info.value.line == line and words in str(info.value), str(info.value)
    # The command says it in one line, exit status 2, nothing started.
    done = subprocess.run(
        [sys.executable, "-m", "pvhpc", "run", path],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": f"{ROOT}/src", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and words in done.stderr, done.stderr


needs_ssh = pytest.mark.skipif(shutil.which("ssh") is None, reason="needs ssh (openssh-client)")


@needs_ssh
def test_network_env_names_only_the_hosts(tmp_path):
    wf = spread(tmp_path)
    launcher = SshLauncher(wf)
    launcher.prepare()
    assert launcher.addresses == {"a": "10.1.0.1", "b": "10.1.0.2", "c": "10.1.0.3"}
    env = launcher.stage_env(next(s for s in wf.stages if s.name == "process@b"))
    assert env["EPICS_PVA_ADDR_LIST"] == "10.1.0.1 10.1.0.2 10.1.0.3"
    assert env["EPICS_PVAS_INTF_ADDR_LIST"] == env["EPICS_CAS_INTF_ADDR_LIST"] == "10.1.0.2"
    assert env["EPICS_PVAS_BEACON_ADDR_LIST"] == "10.1.0.1 10.1.0.3"
    assert all(env[k] == "NO" for k in env if "AUTO" in k)
    runner = launcher.runner_env()
    assert runner["EPICS_PVA_ADDR_LIST"] == "10.1.0.1 10.1.0.2 10.1.0.3"
    assert "EPICS_PVAS_INTF_ADDR_LIST" not in runner
    # search: and name-servers: are added as given.
    wf.launch.search, wf.launch.name_servers = ["10.9.9.9"], ["10.8.8.8:5075"]
    env = network_env(wf.launch, "10.1.0.1", ["10.1.0.1"])
    assert env["EPICS_PVA_ADDR_LIST"] == "10.1.0.1 10.9.9.9"
    assert env["EPICS_PVA_NAME_SERVERS"] == "10.8.8.8:5075"
    assert env["EPICS_PVAS_BEACON_ADDR_LIST"] == "10.1.0.1"


@needs_ssh
def test_ssh_command_puts_the_users_options_first(tmp_path):
    text = SPREAD.format(n=4, u=1, hosts="[a, b]", ids=[1, 2, 3, 4])
    text = "pvhpc-command: /opt/pvhpc/bin/pvhpc\nssh-options: [-F, my.conf]\n" + text
    wf = load_workflow(write(tmp_path, text))
    launcher = SshLauncher(wf)
    launcher.prepare()
    stage = next(s for s in wf.stages if s.name == "sim")
    cmd = launcher.command(stage)
    assert cmd[:4] == ["ssh", "-T", "-F", "my.conf"] and cmd[-3:-1] == ["a", "--"]
    assert "BatchMode=yes" in cmd and "ServerAliveInterval=5" in cmd
    remote = cmd[-1]
    assert remote.startswith("/opt/pvhpc/bin/pvhpc remote-stage --cwd ")
    assert "--env EPICS_PVAS_INTF_ADDR_LIST=10.1.0.1" in remote
    assert remote.endswith("-- sim --channel-name=image --report-period=20 --report-format=json")


@needs_ssh
def test_a_host_without_an_address(tmp_path):
    text = SPREAD.format(n=4, u=1, hosts="[a, nowhere.invalid]", ids=[1, 2, 3, 4])
    wf = load_workflow(write(tmp_path, text.replace(", b: 10.1.0.2", "")))
    with pytest.raises(WorkflowError) as info:
        SshLauncher(wf).prepare()
    assert info.value.line == 11
    assert "host 'nowhere.invalid' has no address" in str(info.value)


def test_slurm_outside_an_allocation(tmp_path):
    wf = spread(tmp_path, launcher="slurm")
    with pytest.raises(Exception, match="not inside a Slurm allocation"):
        SlurmLauncher(wf, environ={"PATH": "/usr/bin:/bin"}).prepare()


@pytest.mark.skipif(shutil.which("srun") is None, reason="needs srun (apt-get install slurm-wlm)")
def test_slurm_places_by_index_name_or_in_turn(tmp_path):
    text = SPREAD.format(n=4, u=1, hosts="[0, 1]", ids=[1, 2, 3, 4])
    text = text.replace("host: c", "host: n7").replace("    host: a\n", "")
    text = text.replace("network:\n  hosts: {a: 10.1.0.1, b: 10.1.0.2, c: 10.1.0.3}\n", "")
    wf = load_workflow(write(tmp_path, text), launcher="slurm")
    # An allocation of three nodes, as Slurm describes it to the job.
    env = {"PATH": os.environ["PATH"], "SLURM_JOB_ID": "7", "SLURM_JOB_NODELIST": "n5,n6,n7"}
    launcher = SlurmLauncher(wf, environ=env)
    launcher.prepare()
    assert launcher.hosts == {"process@0": "n5", "process@1": "n6", "collect": "n7", "sim": "n5"}
    cmd = launcher.command(next(s for s in wf.stages if s.name == "process@1"))
    assert cmd[:6] == ["srun", "--nodes=1", "--ntasks=1", "--nodelist=n6", "--overlap",
                       "--job-name=process@1"]  # fmt: skip
    wf.stages[0].host = 3
    with pytest.raises(WorkflowError, match="node index 3, but the allocation has 3 node"):
        launcher.node_of(wf.stages[0])


def test_batch_script(tmp_path):
    text = SPREAD.format(n=4, u=1, hosts="[0, 2]", ids=[1, 2, 3, 4])
    text = text.replace("host: c", "host: 1").replace("host: a", "host: 0")
    text = "sbatch-options: [--time=00:10:00, --partition=beam]\n" + text
    wf = load_workflow(write(tmp_path, text), launcher="slurm")
    script = batch_script(wf, ["--view", "plain"], cwd="/data/run")
    lines = script.splitlines()
    assert lines[0] == "#!/bin/bash"
    assert "#SBATCH --nodes=3" in lines and "#SBATCH --partition=beam" in lines
    assert "cd /data/run" in lines
    assert lines[-1] == f"exec pvhpc run {tmp_path}/wf.yaml --launcher slurm --view plain"


@pytest.mark.parametrize(
    "args, words",
    [
        (["--launcher", "slurm"], "launcher slurm: not inside a Slurm allocation"),
        (["--emit-batch"], "--emit-batch writes a Slurm batch script: give --launcher slurm"),
        (["--launcher", "pbs"], "argument --launcher: invalid choice: 'pbs'"),
    ],
)
def test_launcher_mistakes_on_the_command_line(tmp_path, args, words):
    path = write(tmp_path, SPREAD.format(n=4, u=1, hosts="[0, 1]", ids=[1, 2, 3, 4]))
    path = write(tmp_path, open(path).read().replace("launcher: ssh", "launcher: local"))
    done = subprocess.run(
        [sys.executable, "-m", "pvhpc", "run", path, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": f"{ROOT}/src", "PATH": os.environ["PATH"]},
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and words in done.stderr, done.stderr
