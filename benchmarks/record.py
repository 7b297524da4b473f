"""``pvhpc record``: the highest rate it records without loss, and how faithfully a
recording replays with ``--timing original``.

    .venv/bin/python benchmarks/record.py                          # 1024x1024 uint16, 200..1000 fps
    .venv/bin/python benchmarks/record.py -r 300,500 -s 3 -d /dev/shm
    .venv/bin/python benchmarks/record.py --replay-only            # replay timing only

Each step runs our simulator (``-nf 4``, ``--seconds`` of frames) and ``pvhpc record``
(server queue 200) into a fresh file under ``--dir``; a rate is lossless when the
recorder's final report has 0 missed, 0 rejected, 0 errors, and as many frames
recorded as the simulator sent. The file is removed after each step. The replay
step serves a recording (128x128 uint16 in bursts: burst pacing at 2 kHz) with
``--timing original`` into a second recorder and compares, gap by gap, the
inter-frame times that arrived with the recorded ones (the recorders' own jitter
is in the figure: it is what a consumer sees). Every process runs on loopback and
is bounded in time; logs go to ``out/bench/record-*.log``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from pvhpc.loopback import LOOPBACK_ENV  # noqa: E402
from pvhpc.workflow.process import json_lines  # noqa: E402

LOGS = ROOT / "out" / "bench"


def _env() -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), PYTHONUNBUFFERED="1")
    env.update(LOOPBACK_ENV)
    return env


def _start(name: str, *args: str) -> tuple[subprocess.Popen, Path]:
    LOGS.mkdir(parents=True, exist_ok=True)
    log = LOGS / f"record-{name}.log"
    proc = subprocess.Popen([sys.executable, "-m", "pvhpc", *args], env=_env(),
                            stdout=open(log, "w"), stderr=subprocess.STDOUT)  # fmt: skip
    return proc, log


def _final(log: Path, key: str) -> dict:
    reports = [r for r in json_lines(log.read_text()) if r.get("final") and key in r]
    return reports[-1] if reports else {}


def run_step(rate: float, seconds: float, nx: int, folder: str, tag: str) -> dict:
    """One simulator and one recorder; what they reported."""
    path = os.path.join(folder, f"bench-{tag}-{rate:g}.h5")
    channel = f"bench:rec:{os.getpid()}:{tag}"
    sim, sim_log = _start(f"sim-{tag}", "sim", "-cn", channel, "-nx", str(nx), "-ny", str(nx),
                          "-dt", "uint16", "-nf", "4", "-fps", str(rate), "-rt", str(seconds),
                          "-std", "3", "-shd", "3", "-rf", "json")  # fmt: skip
    rec, rec_log = _start(f"rec-{tag}", "record", "-ic", channel, "-o", path, "-sqs", "200",
                          "-rt", str(seconds + 5), "-rp", "0", "-rf", "json")  # fmt: skip
    try:
        sim.wait(seconds + 40)
        rec.wait(seconds + 40)
    finally:
        for p in (sim, rec):
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
                p.wait(20)
    sent = _final(sim_log, "nSent")
    final = _final(rec_log, "consumerId")
    size = os.path.getsize(path) if os.path.exists(path) else 0
    if os.path.exists(path):
        os.unlink(path)
    user = final.get("userStats", {})
    proc = final.get("processorStats", {})
    n_sent = int(sent.get("nSent", 0))
    lossless = (
        n_sent > 0
        and user.get("nRecorded") == n_sent
        and proc.get("nMissed") == 0
        and final.get("receiverStats", {}).get("nRejected") == 0
        and proc.get("nErrors") == 0
    )
    span = proc.get("receivingTime") or seconds
    return {
        "rate": rate,
        "achieved": sent.get("rate", 0.0),
        "sent": n_sent,
        "recorded": user.get("nRecorded", 0),
        "missed": proc.get("nMissed"),
        "lossless": bool(lossless),
        "MBps": user.get("storedBytes", 0) / span / 1e6 if span else 0.0,
        "fileMB": size / 1e6,
    }


def replay_timing(seconds: float, folder: str) -> dict:
    """Record a bursty stream, replay it with its timing, record it again: gap errors."""
    first = os.path.join(folder, "bench-burst.h5")
    second = os.path.join(folder, "bench-replayed.h5")
    for path in (first, second):
        if os.path.exists(path):
            os.unlink(path)
    rate = 2000
    a, b = f"bench:burst:{os.getpid()}", f"bench:replay:{os.getpid()}"
    sim, _ = _start("burst-sim", "sim", "-cn", a, "-nx", "128", "-ny", "128", "-dt", "uint16",
                    "-nf", "4", "-fps", str(rate), "-pm", "burst", "-rt", str(seconds),
                    "-std", "3", "-shd", "2", "-rf", "json")  # fmt: skip
    rec, _ = _start("burst-rec", "record", "-ic", a, "-o", first, "-rt", str(seconds + 5),
                    "-rp", "0")  # fmt: skip
    sim.wait(seconds + 40)
    rec.wait(seconds + 40)
    sim, sim_log = _start("replay-sim", "sim", "-cn", b, "-if", first, "--timing", "original",
                          "-std", "3", "-shd", "2", "-rf", "json")  # fmt: skip
    rec, _ = _start("replay-rec", "record", "-ic", b, "-o", second, "-rt", str(seconds + 12),
                    "-rp", "0")  # fmt: skip
    sim.wait(seconds + 40)
    rec.wait(seconds + 40)
    from pvhpc.record import Recording

    with Recording(first) as r1, Recording(second) as r2:
        n = min(r1.n_frames, r2.n_frames)
        recorded = np.diff(r1.time_stamps[:n])
        arrived = np.diff(r2.arrivals[:n])
        baseline = np.abs(np.diff(r1.arrivals[:n]) - recorded)
    error = np.abs(arrived - recorded)
    late = _final(sim_log, "nSent")
    for path in (first, second):
        os.unlink(path)
    return {
        "frames": int(n),
        "gapErrorP50ms": float(np.median(error) * 1e3),
        "gapErrorP99ms": float(np.percentile(error, 99) * 1e3),
        "recorderJitterP99ms": float(np.percentile(baseline, 99) * 1e3),
        "sendLateP50ms": (late.get("lateP50") or 0) * 1e3,
        "sendLateP99ms": (late.get("lateP99") or 0) * 1e3,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-r", "--rates", default="200,400,600,800,1000", help="fps, comma-separated")
    p.add_argument("-s", "--seconds", type=float, default=3.0, help="seconds of frames a step")
    p.add_argument("-x", "--size", type=int, default=1024, help="frame width and height")
    p.add_argument("-d", "--dir", default=tempfile.gettempdir(), help="where files are written")
    p.add_argument("--replay-only", action="store_true", help="only the replay timing")
    args = p.parse_args()
    results: dict = {"load": os.getloadavg()}
    if not args.replay_only:
        steps = []
        for rate in [float(r) for r in args.rates.split(",")]:
            step = run_step(rate, args.seconds, args.size, args.dir, "rate")
            steps.append(step)
            print(json.dumps(step), flush=True)
            if not step["lossless"]:
                break
        good = [s["rate"] for s in steps if s["lossless"]]
        results["highestLossless"] = max(good) if good else None
        results["steps"] = steps
    results["replay"] = replay_timing(args.seconds, args.dir)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
