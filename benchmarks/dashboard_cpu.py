"""The web dashboard's own CPU while a page watches a 5-stage workflow.

    .venv/bin/python benchmarks/dashboard_cpu.py              # about 45 s
    .venv/bin/python benchmarks/dashboard_cpu.py --seconds 20 --fps 50

A workflow of five stages (simulator, 256x256 uint8 frames -> two distributing
consumers -> collector -> a consumer -> a last consumer) runs with ``pvhpc run``;
``pvhpc dashboard --workflow`` attaches to it, and a headless Chromium (the
system's, driven by Playwright) opens the page and shows the source's thumbnail.
Then the dashboard process's CPU is measured (psutil ``cpu_percent`` over
``--seconds``; 100 % is one core), with the page open and with no page. The
dashboard reads status channels and takes one frame per thumbnail period, so its
CPU should not grow with the frame rate.

Everything runs on 127.0.0.1; every wait has a deadline; every process is
stopped at the end. Output of each process is kept in ``out/bench/dashboard/``.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from pvhpc.loopback import loopback_env  # noqa: E402
from pvhpc.workflow.process import stop_process  # noqa: E402

ENV = loopback_env()
ENV["PYTHONUNBUFFERED"] = "1"
ENV["PYTHONPATH"] = str(ROOT / "src")
LOGDIR = ROOT / "out" / "bench" / "dashboard"
PVHPC = [sys.executable, "-m", "pvhpc"]


def workflow(prefix: str, fps: int, runtime: float) -> dict:
    def stage(kind: str, name: str, source: str, **extra) -> dict:
        return {
            "type": kind,
            "input-channel": source,
            "output-channel": f"{prefix}:{name}:*:output",
            "status-channel": f"{prefix}:{name}:*:status",
            "control-channel": f"{prefix}:{name}:*:control",
            "server-queue-size": 100,
            "receiver-queue-size": 1000,
            **extra,
        }

    return {
        "name": f"bench-{prefix}",
        "network": "loopback",
        "stages": {
            "process": stage(
                "consumer", "p", f"{prefix}:image", **{"n-consumers": 2, "distributor-updates": 1}
            ),
            "collect": stage(
                "collector", "k", f"{prefix}:p:*:output", **{"producer-id-list": [1, 2]}
            ),
            "chain": stage("consumer", "c", f"{prefix}:k:1:output"),
            "tail": stage("consumer", "t", f"{prefix}:c:1:output"),
            "sim": {
                "type": "sim",
                "channel-name": f"{prefix}:image",
                "n-x-pixels": 256,
                "n-y-pixels": 256,
                "frame-rate": fps,
                "runtime": runtime,
                "n-frames": 100,
            },
        },
    }


def start(args: list[str], name: str) -> tuple[subprocess.Popen, Path]:
    log = LOGDIR / f"{name}.log"
    with open(log, "wb") as out:
        popen = subprocess.Popen(
            [*PVHPC, *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=ENV,
            start_new_session=True,
        )
    return popen, log


def wait_output(log: Path, pattern: str, popen: subprocess.Popen, timeout: float) -> re.Match:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(pattern, log.read_text(errors="replace"))
        if m:
            return m
        if popen.poll() is not None:
            break
        time.sleep(0.2)
    raise SystemExit(f"{log.name}: no {pattern!r} within {timeout:g} s:\n{log.read_text()[-2000:]}")


def cpu(pid: int, seconds: float) -> float:
    proc = psutil.Process(pid)
    procs = [proc, *proc.children(recursive=True)]
    for p in procs:
        p.cpu_percent(None)
    time.sleep(seconds)
    return sum(p.cpu_percent(None) for p in procs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="measuring time [20]")
    ap.add_argument("--fps", type=int, default=50, help="the source's frame rate [50]")
    args = ap.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("needs Chromium (Debian: apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    LOGDIR.mkdir(parents=True, exist_ok=True)
    prefix = "b" + uuid.uuid4().hex[:6]
    wf_path = LOGDIR / "workflow.yaml"
    runtime = 2 * args.seconds + 40
    wf_path.write_text(json.dumps(workflow(prefix, args.fps, runtime), indent=2))
    run, run_log = start(["run", str(wf_path), "--view", "none"], "run")
    dash = None
    try:
        wait_output(run_log, r"all 5 stage\(s\) up", run, 60)
        dash, dash_log = start(
            ["dashboard", "--workflow", str(wf_path), "--web", "127.0.0.1:0", "--read-only"],
            "dashboard",
        )
        url = wait_output(dash_log, r"dashboard: (http://\S+)", dash, 30)[1]
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium)
            page = browser.new_page()
            page.goto(url)
            page.wait_for_function("document.querySelectorAll('#stages tbody tr').length >= 6")
            page.select_option("#thumb-channel", f"{prefix}:image")
            page.wait_for_function("Number(document.getElementById('thumb').dataset.uniqueId) > 0")
            watched = cpu(dash.pid, args.seconds)
            rows = page.eval_on_selector_all("#stages tbody tr", "r => r.length")
            browser.close()
        idle = cpu(dash.pid, args.seconds)
        stages = cpu(run.pid, 5.0)
        result = {
            "fps": args.fps,
            "frame": "256x256 uint8",
            "stages": 5,
            "rows": rows,
            "seconds": args.seconds,
            "dashboardCpuPercentWatched": round(watched, 1),
            "dashboardCpuPercentNoPage": round(idle, 1),
            "workflowCpuPercent": round(stages, 1),
        }
        print(
            f"dashboard CPU while a page watches the {rows}-row, 5-stage workflow at "
            f"{args.fps} fps (thumbnail of the source, 1 s period): {watched:.1f} % of one "
            f"core over {args.seconds:g} s; with no page: {idle:.1f} %; the workflow's "
            f"own processes: {stages:.1f} %"
        )
        print(json.dumps(result))
        return 0
    finally:
        for popen in (dash, run):
            if popen is not None and popen.poll() is None:
                stop_process(popen, 30)


if __name__ == "__main__":
    sys.exit(main())
