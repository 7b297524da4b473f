"""One workflow as Slurm job steps: ``pvhpc run --launcher slurm``.

The fixture runs a real single-node Slurm on localhost (Debian's slurm-wlm:
slurmctld and slurmd, authenticated by a munged of its own; configuration, key,
state and ports of the test's, nothing of the system's) and stops it afterwards.
Inside an ``salloc`` allocation, ``pvhpc run`` starts each stage of the launcher
tests' workflow (a simulator, 4 distributing consumers as two job steps of 2, a
collector) with ``srun``; the summary must account for every frame. Then
``--emit-batch`` writes an sbatch script for the same workflow, and the job it
submits must run it to the same result.

Needs root and slurm-wlm + munge (``apt-get install slurm-wlm munge``); skipped
with the reason otherwise.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys

import pytest

from harness import ROOT, wait_for
from spread_workflow import frames_sent, set_lines, spread_workflow, stage_reports

pytestmark = [pytest.mark.e2e, pytest.mark.slurm]

TOOLS = ("slurmctld", "slurmd", "munged", "srun", "salloc", "sbatch", "scontrol", "sinfo")
NODE = "pvhpc-node"


def _why_not() -> str | None:
    if sys.platform != "linux":
        return "the Slurm tests run on Linux"
    if os.geteuid() != 0:
        return "a Slurm cluster on localhost needs root (slurmd starts jobs as their user)"
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    for tool in TOOLS:
        if shutil.which(tool, path=path) is None:
            return f"needs {tool} (apt-get install slurm-wlm munge)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Slurm:
    """munged, slurmctld and slurmd of one test, all on 127.0.0.1."""

    def __init__(self, tmp):
        self.dir = tmp
        self.daemons: list[subprocess.Popen] = []
        self.conf = tmp / "slurm.conf"
        self.env = dict(
            os.environ,
            SLURM_CONF=str(self.conf),
            PATH=os.environ.get("PATH", "") + ":/usr/sbin:/sbin",
            PYTHONPATH=os.path.join(ROOT, "src"),
        )

    def _daemon(self, name: str, *args: str) -> None:
        log = open(self.dir / f"{name}.log", "wb")  # noqa: SIM115
        self.daemons.append(
            subprocess.Popen([name, *args], stdout=log, stderr=subprocess.STDOUT, env=self.env)
        )

    def start(self) -> None:
        d = self.dir
        for sub in ("state", "spool"):
            (d / sub).mkdir()
        key = d / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        socket_path = d / "munge.sock"
        self._daemon(
            "munged", "-F", "--force", f"--socket={socket_path}", f"--key-file={key}",
            f"--pid-file={d}/munged.pid", f"--seed-file={d}/munged.seed",
            f"--log-file={d}/munged.file.log",
        )  # fmt: skip
        wait_for(socket_path.exists, 20, "munged's socket")
        host = socket.gethostname().split(".")[0]
        (d / "plugstack.conf").write_text("")
        self.conf.write_text(
            f"ClusterName=pvhpc\nSlurmctldHost={host}(127.0.0.1)\n"
            f"SlurmctldPort={_free_port()}\nSlurmdPort={_free_port()}\n"
            f"AuthType=auth/munge\nCredType=cred/munge\nAuthInfo=socket={socket_path}\n"
            "SlurmUser=root\nSlurmdUser=root\n"
            f"StateSaveLocation={d}/state\nSlurmdSpoolDir={d}/spool\n"
            f"SlurmctldPidFile={d}/slurmctld.pid\nSlurmdPidFile={d}/slurmd.pid\n"
            f"PlugStackConfig={d}/plugstack.conf\n"
            "ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\nMpiDefault=none\n"
            "SelectType=select/cons_tres\nSelectTypeParameters=CR_Core\n"
            "SchedulerType=sched/builtin\nReturnToService=2\n"
            "JobAcctGatherType=jobacct_gather/none\nAccountingStorageType=accounting_storage/none\n"
            f"NodeName={NODE} NodeHostname={host} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} "
            "State=UNKNOWN\nPartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP\n"
        )
        self._daemon("slurmctld", "-D", "-f", str(self.conf))
        self._daemon("slurmd", "-D", "-f", str(self.conf), "-N", NODE)

        def idle():
            for proc in self.daemons:
                assert proc.poll() is None, f"{proc.args[0]} exited: {self.logs()}"
            done = self.run(["sinfo", "-h", "-o", "%T"], timeout=10)
            return done.stdout.strip() == "idle"

        wait_for(idle, 40, "the Slurm node to be idle", interval=0.5)

    def run(self, argv: list[str], timeout: float = 90) -> subprocess.CompletedProcess:
        return subprocess.run(
            argv, env=self.env, capture_output=True, text=True, timeout=timeout, cwd=self.dir
        )

    def job_end(self, job: str) -> tuple[str, str] | None:
        """(state, exit code) of a job that has ended, else None."""
        text = self.run(["scontrol", "show", "job", "-o", job], timeout=10).stdout
        state = re.search(r"\bJobState=(\S+)", text)
        code = re.search(r"\bExitCode=(\S+)", text)
        if state and state.group(1) not in ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING"):
            return state.group(1), code.group(1) if code else "?"
        return None

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}"
            for p in sorted(self.dir.glob("*.log"))
        )

    def stop(self) -> None:
        for proc in reversed(self.daemons):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)


@pytest.fixture
def slurm(tmp_path):
    reason = _why_not()
    if reason:
        pytest.skip(reason)
    cluster = Slurm(tmp_path)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def workflow(slurm: Slurm, launcher: str) -> str:
    # One node: the two halves of the consumer set are two job steps on node 0.
    text = spread_workflow(launcher, [0, 0], 0, 0, extra="network: hosts")
    path = slurm.dir / "spread.yaml"
    path.write_text(text)
    return str(path)


def run_options(prefix: str, logs) -> list[str]:
    return ["--channel-prefix", f"{prefix}:", "--log-dir", str(logs), "--quiet-time", "2"]


def check_summary(out: str, logs) -> None:
    sent = frames_sent(str(logs))
    assert sent > 0
    sets = set_lines(out)
    assert sets["process@0#1 + process@0#2 (distributor)"] == ("ok", sent, sent), out
    assert sets["collect@0 1"] == ("ok", sent, sent), out
    assert "RESULT: ok, every frame is accounted for" in out
    a = stage_reports(str(logs), "process_0_1", "consumerId")
    b = stage_reports(str(logs), "process_0_2", "consumerId")
    assert sorted(a) == [1, 2] and sorted(b) == [3, 4]
    consumers = {**a, **b}
    assert all(r.get("final") and r["processorStats"]["nProcessed"] > 0 for r in consumers.values())
    assert sum(r["processorStats"]["nProcessed"] for r in consumers.values()) == sent


def test_srun_steps_in_an_allocation(slurm, tmp_path, prefix):
    logs = tmp_path / "logs"
    # The file says local; the command line picks Slurm.
    command = [
        sys.executable,
        "-m",
        "pvhpc",
        "run",
        workflow(slurm, "local"),
        "--launcher",
        "slurm",
    ]
    done = slurm.run(["salloc", "-N1", *command, "--view", "none", *run_options(prefix, logs)])
    out = done.stdout + done.stderr
    sys.stdout.write(out)
    assert done.returncode == 0, out + slurm.logs()
    assert "launcher slurm" in out
    check_summary(out, logs)


def test_emitted_batch_script_runs_under_sbatch(slurm, tmp_path, prefix):
    logs = tmp_path / "logs"
    script = tmp_path / "spread.sbatch"
    command = [sys.executable, "-m", "pvhpc", "run", workflow(slurm, "slurm"), "--emit-batch"]
    done = slurm.run([*command, str(script), *run_options(prefix, logs)])
    assert done.returncode == 0, done.stderr
    assert f"submit it with: sbatch {script}" in done.stderr
    text = script.read_text()
    assert text.startswith("#!/bin/bash\n") and "#SBATCH --nodes=1\n" in text
    assert "--launcher slurm" in text
    done = slurm.run(["sbatch", "--parsable", str(script)])
    assert done.returncode == 0, done.stdout + done.stderr + slurm.logs()
    job = done.stdout.strip().split(";")[0]
    # (sbatch --wait polls at growing intervals: tens of seconds after the job ended.)
    ended = wait_for(lambda: slurm.job_end(job), 120, f"batch job {job} to end", interval=0.5)
    out = (tmp_path / f"pvhpc-spread-{job}.out").read_text()
    assert ended == ("COMPLETED", "0:0"), out + slurm.logs()
    sys.stdout.write(out)
    check_summary(out, logs)
