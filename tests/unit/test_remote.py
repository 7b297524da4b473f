"""A stage on another host (:mod:`pvhpc.workflow.remote`), with the wrapper started
here directly, without ssh or srun between: the stop sequence over stdin, the end
of stdin, the exit status line, and a wrapper that dies."""

from __future__ import annotations

import os
import signal
import sys

import pytest

from harness import ROOT, wait_for
from pvhpc.workflow.model import StageSpec
from pvhpc.workflow.process import json_lines
from pvhpc.workflow.remote import RemoteStageProcess


def consumer_stage(prefix: str) -> StageSpec:
    argv = [
        "--input-channel", f"{prefix}:nothing", "--status-channel", f"{prefix}:status",
        "--report-period", "0.3", "--report-format", "json", "--log-level", "info",
    ]  # fmt: skip
    stage = StageSpec(
        name="c", type="consumer", line=1, options={}, lines={}, env={}, argv=argv, host="h1"
    )
    return stage


def start(tmp_path, prefix: str) -> RemoteStageProcess:
    stage = consumer_stage(prefix)
    words = [
        sys.executable, "-m", "pvhpc", "remote-stage", "--cwd", str(tmp_path),
        "--env", "PVHPC_TEST_MARK=1", "--", *stage.command,
    ]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "src"))
    proc = RemoteStageProcess(stage, str(tmp_path), env, words, "link to h1", "wrapper")
    proc.start()
    return proc


def reports(proc: RemoteStageProcess) -> list[dict]:
    with open(proc.out_path) as f:
        return [r for r in json_lines(f.read()) if "consumerId" in r]


def stage_pid(proc: RemoteStageProcess) -> int:
    return wait_for(lambda: next((r["pid"] for r in reports(proc)), None), 30, "a report")


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split()[2] == "Z"


@pytest.fixture
def remote(tmp_path, prefix):
    procs: list[RemoteStageProcess] = []

    def make() -> RemoteStageProcess:
        procs.append(start(tmp_path, prefix))
        return procs[-1]

    yield make
    for proc in procs:
        if proc.running:
            proc.stop(2.0)


def test_stop_over_stdin_drains_and_reports(remote):
    proc = remote()
    stage_pid(proc)
    assert proc.stop(grace=20) == 0
    assert proc.remote_status == 0 and not proc.lost
    final = [r for r in reports(proc) if r.get("final")]
    assert len(final) == 1 and final[0]["consumerId"] == 1
    err = open(proc.err_path).read()
    # stderr comes back prefixed with the stage and its host; the exit line is taken.
    assert "[c@h1] " in err and "consumer 1: monitoring" in err
    assert "remote-stage: exit status" not in err


def test_end_of_stdin_stops_the_stage(remote):
    proc = remote()
    pid = stage_pid(proc)
    proc.popen.stdin.close()  # the connection is gone: nobody can stop it any more
    assert proc.popen.wait(30) == 0
    assert proc.remote_status == 0
    assert any(r.get("final") for r in reports(proc))
    wait_for(lambda: gone(pid), 10, "the stage to end")


def test_a_dead_wrapper_takes_its_stage_along_and_is_lost(remote):
    proc = remote()
    pid = stage_pid(proc)
    os.kill(proc.popen.pid, signal.SIGKILL)
    proc.popen.wait(10)
    assert proc.lost
    assert proc.failure() == "link to h1 lost (wrapper exit status -9)"
    wait_for(lambda: gone(pid), 20, "the stage to end with its wrapper")
