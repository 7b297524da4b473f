"""How fast things happen that the end-to-end tests only check happen at all.

    .venv/bin/python benchmarks/timings.py                 # every figure, about 1 minute
    .venv/bin/python benchmarks/timings.py --only connect,cli -n 3

The tests assert behaviour (every frame arrived, the command ended by its own
deadline); wall-clock figures depend on the machine's load, so they are measured
here and printed, one line each, then all of them as one JSON object:

- ``connect``: seconds from a source's channel appearing to the ``connected to``
  log line of a consumer started 8 s before it (its channel search had time to back
  off). tests/e2e/test_faults.py checks that such a consumer misses no frame.
- ``pace``: receiving time of a consumer whose output channel has two subscribers
  that spend 50 ms on every update, for 600 frames sent at 300 fps (2.0 s of
  frames). tests/e2e/test_faults.py checks it misses and overruns nothing.
- ``cli``: wall time of ``pvhpc get`` and ``pvhpc control`` with ``-t 1`` on a
  channel nobody serves, beside ``pvhpc --version`` (the interpreter's start-up).
  tests/e2e/test_operator_cli.py checks they end with their deadline's message.
- ``workflow``: wall time of ``pvhpc run`` on a finite workflow (2 s at 200 fps,
  two distributing consumers and a collector), and how long after the source's
  final report it ended. tests/e2e/test_run_workflow.py checks it ended because
  every frame arrived.

Every process runs with the loopback EPICS settings and the checkout's ``src`` on
``PYTHONPATH``; every wait has a deadline; processes are stopped at the end. Output
of every process is kept in ``out/bench/timings/``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from pvhpc.loopback import loopback_env  # noqa: E402  (imports nothing: pvaccess not loaded)

ENV = loopback_env()
ENV["PYTHONUNBUFFERED"] = "1"
ENV["PYTHONPATH"] = str(ROOT / "src")
LOGDIR = ROOT / "out" / "bench" / "timings"
PVHPC = [sys.executable, "-m", "pvhpc"]

SLOW_SUBSCRIBER = """
import sys, time
import pvaccess as pva

n = 0

def slow(pv):
    global n
    n += 1
    time.sleep(float(sys.argv[3]))

channel = pva.Channel(sys.argv[1])
channel.monitor(slow, sys.argv[2])
print("subscribed", flush=True)
time.sleep(120)
"""


class Proc:
    """One process, its output in a file under ``LOGDIR``."""

    def __init__(self, name: str, cmd: list[str]):
        self.name = name
        self.path = LOGDIR / f"{name}.out"
        self._out = open(self.path, "wb")
        self.popen = subprocess.Popen(
            cmd, stdout=self._out, stderr=subprocess.STDOUT, env=ENV, start_new_session=True
        )

    def text(self) -> str:
        return self.path.read_text(errors="replace")

    def wait_for(self, pattern: str, timeout: float, interval: float = 0.01) -> re.Match:
        """Wait until the output matches ``pattern``; fails if the process exits first."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            m = regex.search(self.text())
            if m:
                return m
            if self.popen.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: no {pattern!r}:\n{self.text()[-2000:]}")
            time.sleep(interval)

    def stop(self, timeout: float = 20) -> None:
        """The stages' own stop sequence (SIGINT, SIGTERM, then SIGKILL of the group)."""
        from pvhpc.workflow.process import stop_process

        stop_process(self.popen, timeout)
        self._out.close()


def prefix() -> str:
    return "b" + uuid.uuid4().hex[:8]


def run_stopping(procs: list[Proc], body):
    try:
        return body()
    finally:
        for p in reversed(procs):
            p.stop()


def final_report(proc: Proc, id_name: str = "consumerId") -> dict:
    for line in reversed(proc.text().splitlines()):
        line = line.strip()
        if line.startswith("{") and '"final": true' in line:
            report = json.loads(line)
            if id_name in report:
                return report
    raise RuntimeError(f"{proc.name}: no final JSON report:\n{proc.text()[-2000:]}")


def sim_cmd(channel: str, frames: int, fps: float, *extra: str) -> list[str]:
    return [
        *PVHPC, "sim", "-cn", channel, "-fps", str(fps), "-rt", str(frames / fps),
        "-shd", "60", *extra,
    ]  # fmt: skip


def measure_connect(n: int) -> dict:
    """Source appearing → consumer connected, for a consumer started 8 s early."""
    values = []
    for k in range(n):
        pre = prefix()
        procs: list[Proc] = []

        def once(pre=pre, procs=procs, k=k):
            c = Proc(
                f"connect-consumer-{k}",
                [*PVHPC, "consumer", "-ic", f"{pre}:image", "-sc", f"{pre}:c:*:status",
                 "-sqs", "100", "-ll", "info"],
            )  # fmt: skip
            procs.append(c)
            c.wait_for(r"monitoring", 30)
            time.sleep(8)  # the scenario: no source for 8 s, so the search backs off
            sim = Proc(f"connect-sim-{k}", sim_cmd(f"{pre}:image", 20, 100, "-std", "2"))
            procs.append(sim)
            sim.wait_for(r"serving", 30)
            appeared = time.time()
            m = c.wait_for(r"(\S+ \S+) INFO .*connected to " + re.escape(f"{pre}:image"), 30)
            stamp = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            return stamp - appeared

        values.append(run_stopping(procs, once))
        print(f"connect: consumer connected {values[-1]:.2f} s after its source appeared")
    return {"connect_s": values}


def measure_pace(n: int) -> dict:
    """Receiving time of a consumer with slow subscribers, 600 frames at 300 fps."""
    script = LOGDIR / "slow_subscriber.py"
    script.write_text(SLOW_SUBSCRIBER)
    values = []
    for k in range(n):
        pre = prefix()
        procs: list[Proc] = []

        def once(pre=pre, procs=procs, k=k):
            output = f"{pre}:c:1:output"
            c = Proc(
                f"pace-consumer-{k}",
                [*PVHPC, "consumer", "-ic", f"{pre}:image", "-oc", f"{pre}:c:*:output",
                 "-sqs", "100", "-rf", "json"],
            )  # fmt: skip
            procs.append(c)
            ready = subprocess.run(
                [*PVHPC, "get", output, "-t", "30"], env=ENV, capture_output=True, timeout=60
            )
            if ready.returncode != 0:
                raise RuntimeError(f"{output} never answered: {ready.stderr!r}")
            for j, request in enumerate(("field()", "record[queueSize=5]field()")):
                sub = Proc(
                    f"pace-subscriber-{k}-{j}",
                    [sys.executable, str(script), output, request, "0.05"],
                )
                procs.append(sub)
                sub.wait_for("subscribed", 20)
            sim = Proc(
                f"pace-sim-{k}", sim_cmd(f"{pre}:image", 600, 300, "-nx", "128", "-ny", "128",
                                         "-std", "4"),
            )  # fmt: skip
            procs.append(sim)
            sent = int(sim.wait_for(r"done, sent (\d+) frames", 60).group(1))
            c.stop()
            r = final_report(c)
            p = r["processorStats"]
            return sent, p["nProcessed"], p["nMissed"], p["receivingTime"]

        sent, processed, missed, took = run_stopping(procs, once)
        values.append(took)
        print(
            f"pace: {processed} of {sent} frames (missed {missed}) received over {took:.2f} s "
            f"(the source took {sent / 300:.2f} s)"
        )
    return {"pace_receiving_s": values}


def wall(cmd: list[str], timeout: float = 60) -> tuple[float, int]:
    t0 = time.monotonic()
    done = subprocess.run(cmd, env=ENV, capture_output=True, timeout=timeout)
    return time.monotonic() - t0, done.returncode


def measure_cli(n: int) -> dict:
    """Wall time of get/control with -t 1 on an absent channel, and of --version."""
    pre = prefix()
    cases = {
        "version": [*PVHPC, "--version"],
        "get": [*PVHPC, "get", f"{pre}:nothing", "-t", "1"],
        "control": [*PVHPC, "control", f"{pre}:c:9:control", "get_stats", "-t", "1"],
    }
    out = {}
    for name, cmd in cases.items():
        times = [wall(cmd)[0] for _ in range(n)]
        out[f"cli_{name}_s"] = times
        shown = " ".join(cmd[3:])
        print(
            f"cli: pvhpc {shown}: median {statistics.median(times):.2f} s, max {max(times):.2f} s"
        )
    return out


def measure_workflow(n: int) -> dict:
    """``pvhpc run`` on a finite 2 s workflow: total wall time and time after the source."""
    totals, afters = [], []
    for k in range(n):
        pre = prefix()
        folder = LOGDIR / f"workflow-{k}"
        folder.mkdir(parents=True, exist_ok=True)
        stage = {"server-queue-size": 100, "report-period": 0.5}
        doc = {
            "name": f"timings-{pre}",
            "network": "loopback",
            "stages": {
                "work": {
                    "type": "consumer", "input-channel": f"{pre}:image",
                    "output-channel": f"{pre}:c:*:output", "status-channel": f"{pre}:c:*:status",
                    "control-channel": f"{pre}:c:*:control", "n-consumers": 2,
                    "distributor-updates": 1, **stage,
                },
                "collect": {
                    "type": "collector", "producer-id-list": [1, 2],
                    "input-channel": f"{pre}:c:*:output", "status-channel": f"{pre}:k:*:status",
                    "control-channel": f"{pre}:k:*:control", "collector-cache-size": 10, **stage,
                },
                "sim": {
                    "type": "sim", "channel-name": f"{pre}:image", "n-x-pixels": 32,
                    "n-y-pixels": 24, "frame-rate": 200, "runtime": 2.0, "start-delay": 1,
                },
            },
        }  # fmt: skip
        path = folder / "wf.yaml"
        path.write_text(json.dumps(doc, indent=2))
        logs = folder / "logs"
        runner = Proc(
            f"workflow-run-{k}",
            [*PVHPC, "run", str(path), "--log-dir", str(logs), "--quiet-time", "2",
             "--view", "none"],
        )  # fmt: skip
        t0 = time.monotonic()
        source_done = None
        try:
            deadline = t0 + 120
            while runner.popen.poll() is None and time.monotonic() < deadline:
                sim_out = logs / "sim.out"
                if (
                    source_done is None
                    and sim_out.exists()
                    and "done, sent" in sim_out.read_text(errors="replace")
                ):
                    source_done = time.monotonic()
                time.sleep(0.02)
            end = time.monotonic()
        finally:
            runner.stop()
        status = runner.popen.returncode
        total = end - t0
        after = end - source_done if source_done is not None else float("nan")
        totals.append(total)
        afters.append(after)
        print(f"workflow: ended (status {status}) {total:.1f} s after start, {after:.1f} s "
              f"after the source's final report")  # fmt: skip
    return {"workflow_total_s": totals, "workflow_after_source_s": afters}


MEASUREMENTS = {
    "connect": measure_connect,
    "pace": measure_pace,
    "cli": measure_cli,
    "workflow": measure_workflow,
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", default=",".join(MEASUREMENTS), help="comma-separated subset")
    p.add_argument("-n", "--repeat", type=int, default=1, help="repeats of each [1]")
    args = p.parse_args(argv)
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in MEASUREMENTS]
    if unknown:
        p.error(f"--only: unknown measurement(s) {', '.join(unknown)}; "
                f"choose from {', '.join(MEASUREMENTS)}")  # fmt: skip
    if args.repeat < 1:
        p.error(f"--repeat must be >= 1, got {args.repeat}")
    LOGDIR.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    for name in chosen:
        results.update(MEASUREMENTS[name](args.repeat))
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
