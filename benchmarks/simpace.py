"""Simulator pacing: achieved rate, inter-frame gaps and CPU, ours (even and burst)
against the reference, 128x128 uint8.

    .venv/bin/python benchmarks/simpace.py                        # 1k, 5k, 10k, 20k fps, 3 s each
    .venv/bin/python benchmarks/simpace.py -r 10000 -s 5 -n 3     # one rate, 3 repeats of 5 s
    .venv/bin/python benchmarks/simpace.py -i even,reference      # only these simulators

Each simulator process serves frames for ``--seconds`` to one bare monitor
(``benchmarks/floor.py``, a ``pvaccess`` monitor whose callback only counts, in its
own process) that asks for a server queue of 5000 so that it sees every frame. The
achieved rate is what the monitor counted between its first and last arrival (noted
to the millisecond); the CPU is that of the whole simulator process (every thread,
from psutil), sampled every 20 ms and interpolated to the same span. The gaps are
the time between consecutive frames as our simulator measured them at publish time
(its final JSON report; the reference does not say). Simulators run one after the
other, in an order that flips every repeat, so that load from other work on a shared
machine falls on all of them; the table gives medians over the repeats and the load
average at the end (other work skews every figure: take final numbers on a quiet
machine).

Every process runs with the loopback EPICS settings and is bounded in time (the
publishing time plus 40 s at most); output goes to ``out/bench/simpace-*.log``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from pvhpc.loopback import loopback_env  # noqa: E402

# Before pvaccess is loaded: this process's readiness probe stays on loopback too.
os.environ.update(loopback_env())

import pvaccess as pva  # noqa: E402

PY = sys.executable
LOGDIR = ROOT / "out" / "bench"
OURS_CMD = [PY, "-m", "pvhpc", "sim"]
REF_CMD = [PY, "-c", "from pvapy.cli.adSimServer import main; main()"]
METER = [PY, str(ROOT / "benchmarks" / "floor.py")]
IMPLS = ("even", "burst", "reference")
START_DELAY = 3.0
SHUTDOWN_DELAY = 1.0
N_DISTINCT = 100
SERVER_QUEUE = 5000


def sim_command(impl: str, channel: str, rate: float, seconds: float) -> list[str]:
    common = [
        "-cn", channel, "-nx", "128", "-ny", "128", "-dt", "uint8", "-fps", f"{rate:g}",
        "-rt", f"{seconds:g}", "-nf", str(N_DISTINCT), "-std", f"{START_DELAY:g}",
        "-shd", f"{SHUTDOWN_DELAY:g}", "-rp", f"{rate:g}",
    ]  # fmt: skip
    if impl == "reference":
        return [*REF_CMD, *common, "-dc"]
    return [*OURS_CMD, *common, "--pacing", impl, "--report-format", "json"]


def _wait_for_channel(channel: str, proc: subprocess.Popen, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    probe = pva.Channel(channel)
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            probe.get("field(uniqueId)")
            return True
        except pva.PvaException:
            time.sleep(0.1)
    return False


def _cpu_at(samples: list[tuple[float, float]], t: float) -> float:
    for (ta, ca), (tb, cb) in zip(samples, samples[1:], strict=False):
        if ta <= t <= tb:
            return ca + (cb - ca) * ((t - ta) / (tb - ta) if tb > ta else 0.0)
    return samples[0][1] if t < samples[0][0] else samples[-1][1]


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def _stop(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGINT, 10), (signal.SIGKILL, 5)):
        if proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            continue


def _last_json(path: Path, key: str | None = None) -> dict | None:
    for line in reversed(path.read_text(errors="replace").splitlines()):
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict) and (key is None or obj.get(key)):
            return obj
    return None


def run_one(impl: str, rate: float, seconds: float, tag: str) -> dict:
    channel = f"pace{os.getpid()}{tag}:img"
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT / "src"))
    LOGDIR.mkdir(parents=True, exist_ok=True)
    sim_log = LOGDIR / f"simpace-{impl}-{rate:g}-{tag}.log"
    meter_log = LOGDIR / f"simpace-{impl}-{rate:g}-{tag}-meter.log"
    samples: list[tuple[float, float]] = []
    meter = None
    with open(sim_log, "w") as out:
        sim = subprocess.Popen(
            sim_command(impl, channel, rate, seconds), stdout=out, stderr=subprocess.STDOUT,
            env=env,
        )  # fmt: skip
    try:
        if not _wait_for_channel(channel, sim, 60):
            return {"error": f"simulator did not start (see {sim_log})"}
        with open(meter_log, "w") as out:
            meter = subprocess.Popen(
                [*METER, "-ic", channel, "-sqs", str(SERVER_QUEUE), "--resolution", "0.001",
                 "-rt", f"{START_DELAY + seconds + 40:g}"],
                stdout=out, stderr=subprocess.STDOUT, env=env,
            )  # fmt: skip
        ps = psutil.Process(sim.pid)
        deadline = time.monotonic() + START_DELAY + seconds + 40
        while sim.poll() is None and time.monotonic() < deadline:
            try:
                samples.append((time.time(), _cpu_seconds(ps)))
            except psutil.Error:
                break
            time.sleep(0.02)
    finally:
        _stop(sim)
        if meter is not None:
            time.sleep(0.2)
            _stop(meter)
    counted = _last_json(meter_log)
    if not counted or counted["nCounted"] < 2 or len(samples) < 2:
        return {"error": f"no count from the monitor (see {meter_log})"}
    t0, t1 = counted["firstTime"], counted["lastTime"]
    if t1 <= t0:
        return {"error": f"no arrival span (see {meter_log})"}
    result = {
        "received": counted["nCounted"],
        "overruns": counted["nOverruns"],
        "measured": (counted["nCounted"] - 1) / (t1 - t0),
        "cpuPercent": 100 * (_cpu_at(samples, t1) - _cpu_at(samples, t0)) / (t1 - t0),
    }
    if impl != "reference":
        final = _last_json(sim_log, "final")
        if final:
            result["sent"] = final["nSent"]
            result["reportedRate"] = final["rate"]
            result["restarts"] = final["nRestarts"]
            if final["gapP50"] is not None:
                result["gapP50"] = 1e6 * final["gapP50"]
                result["gapP99"] = 1e6 * final["gapP99"]
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-r", "--rates", default="1000,5000,10000,20000", help="fps [%(default)s]")
    p.add_argument("-s", "--seconds", type=float, default=3.0, help="publishing time per run [3]")
    p.add_argument("-n", "--repeats", type=int, default=1, help="runs per simulator and rate [1]")
    p.add_argument("-i", "--impls", default=",".join(IMPLS), help="simulators [%(default)s]")
    p.add_argument("--json", help="also write every run to this file")
    args = p.parse_args(argv)
    rates = [float(r) for r in args.rates.split(",") if r.strip()]
    impls = [i.strip() for i in args.impls.split(",") if i.strip()]
    if not rates or any(r <= 0 or r > 100_000 for r in rates):
        p.error("--rates: give rates between 0 and 100000 fps")
    if not impls or any(i not in IMPLS for i in impls):
        p.error(f"--impls: choose from {', '.join(IMPLS)}")
    if not 0 < args.seconds <= 60 or not 1 <= args.repeats <= 20:
        p.error("need 0 < --seconds <= 60 and 1 <= --repeats <= 20")
    raw: dict[str, dict[str, list[dict]]] = {impl: {} for impl in impls}
    for rate in rates:
        for rep in range(args.repeats):
            for impl in impls if rep % 2 == 0 else impls[::-1]:
                r = run_one(impl, rate, args.seconds, f"r{rep}")
                r["requested"] = rate
                _log(impl, rate, rep, r)
                raw[impl].setdefault(f"{rate:g}", []).append(r)
    table(impls, rates, raw, args.repeats)
    if args.json:
        Path(args.json).write_text(json.dumps(raw, indent=1))
    return 0


def _log(impl: str, rate: float, rep: int, r: dict) -> None:
    text = r.get("error") or (
        f"{r['measured']:.1f} fps, cpu {r['cpuPercent']:.1f} %, received {r['received']}"
        + (f" of {r['sent']}, restarts {r['restarts']}" if "sent" in r else "")
        + (f", gaps p50 {r['gapP50']:.1f} p99 {r['gapP99']:.1f} us" if "gapP50" in r else "")
    )
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {impl:9s} {rate:6g} fps #{rep + 1}: {text}\n")
    sys.stderr.flush()


def table(impls: list[str], rates: list[float], raw: dict, repeats: int) -> None:
    def med(runs: list[dict], key: str) -> str:
        values = [r[key] for r in runs if key in r]
        return f"{statistics.median(values):.1f}" if values else "-"

    print(f"\nmedians of {repeats} run(s); gaps in microseconds; load average {_load()}")
    print(
        f"{'requested':>9} {'simulator':>9} {'achieved':>9} {'error':>7} {'cpu %':>6} "
        f"{'gap p50':>8} {'gap p99':>8}"
    )
    for rate in rates:
        for impl in impls:
            runs = [r for r in raw[impl][f"{rate:g}"] if "error" not in r]
            if not runs:
                print(f"{rate:9g} {impl:>9}  (no run succeeded)")
                continue
            fps = statistics.median(r["measured"] for r in runs)
            print(
                f"{rate:9g} {impl:>9} {fps:9.1f} {100 * (fps / rate - 1):+6.2f}% "
                f"{med(runs, 'cpuPercent'):>6} {med(runs, 'gapP50'):>8} {med(runs, 'gapP99'):>8}"
            )


def _load() -> str:
    return ", ".join(f"{v:.2f}" for v in os.getloadavg())


if __name__ == "__main__":
    sys.exit(main())
