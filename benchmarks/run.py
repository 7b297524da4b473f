"""Side-by-side benchmarks of pvhpc against the reference (PvaPy's streaming framework).

    .venv/bin/python benchmarks/run.py            # everything, about 20 minutes (make bench)
    .venv/bin/python benchmarks/run.py --quick    # smoke run, about 3 minutes
    .venv/bin/python benchmarks/run.py --only cpu,lossless

Every benchmark process runs with the loopback EPICS settings of
``../shared/epics-loopback.env`` (or the same values built in), one run at a time,
each bounded in frames and time. Ours and the reference run alternately, each
measurement repeated; tables give medians and the median of the per-repeat ratios
ours/reference. The reference's commands are run as ``python -c 'from pvapy.cli.X
import main; main()'`` (our console scripts have the same names); their statistics
are read from what they print.

A full run writes ``docs/benchmarks.md``, ``docs/img/lossless_rate.png`` and the raw
numbers in ``benchmarks/results.json``; a quick run writes the same into ``out/bench/``
and leaves the docs alone. Every process's output is kept in ``out/bench/``.

Measurements (see ``docs/benchmarks.md`` for the method in words):

1. ``cpu``: consumer CPU per 1000 frames, marginal over two stream lengths, beside
   the transport floor (``floor.py``, a bare monitor that counts).
2. ``lossless``: highest lossless frame rate, one consumer per frame size, and 2 and 4
   consumers sharing the distributor.
3. ``sim``: the simulators' achieved rate and CPU at 128x128.
4. ``collector``: a collector behind 4 producers (``producers.py``): highest lossless
   rate, CPU per frame, memory; and memory per consumer from 1 and 2.
5. ``latency``: source timestamp -> arrival on the consumer's output channel.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from pvhpc.loopback import LOOPBACK_ENV as LOOPBACK_DEFAULTS

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
PY = sys.executable
LOOPBACK_ENV = ROOT.parent / "shared" / "epics-loopback.env"

OURS, REF, FLOOR, OURS_NOLAT = "ours", "reference", "floor", "ours-nolatency"
REF_CONSUMER = [PY, "-c", "from pvapy.cli.hpcConsumer import main; main()"]
REF_COLLECTOR = [PY, "-c", "from pvapy.cli.hpcCollector import main; main()"]
REF_SIM = [PY, "-c", "from pvapy.cli.adSimServer import main; main()"]
REF_PASSTHROUGH = "pvapy.hpc.userDataProcessor.UserDataProcessor"
OUR_CMD = [PY, "-m", "pvhpc"]

# Rates 12 % apart (the R20 series), the ladder every search moves on.
LADDER = [
    round(v)
    for v in (
        m * 10**e
        for e in range(1, 5)
        for m in (
            1,
            1.12,
            1.25,
            1.4,
            1.6,
            1.8,
            2,
            2.24,
            2.5,
            2.8,
            3.15,
            3.55,
            4,
            4.5,
            5,
            5.6,
            6.3,
            7.1,
            8,
            9,
        )
    )
] + [100000]
# Server queue size per frame size (as in the seed's throughput tests).
SERVER_QUEUE = {128: 2000, 512: 1000, 1024: 500, 2048: 200}
# Distinct frames the simulator prepares per frame size (memory stays small).
N_DISTINCT = {128: 100, 512: 50, 1024: 20, 2048: 10}


def loopback_env() -> dict:
    env = dict(os.environ)
    values = dict(LOOPBACK_DEFAULTS)  # the developers' file, when present, has the last word
    if LOOPBACK_ENV.is_file():
        for line in LOOPBACK_ENV.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                key, _, value = line.partition("=")
                values[key.strip()] = value.strip()
    env.update(values)
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("PYTHONPATH", None)
    return env


ENV = loopback_env()
LOGDIR = ROOT / "out" / "bench"
_seq = itertools.count(1)


def log(msg: str) -> None:
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stderr.flush()


# -- processes -----------------------------------------------------------------------


class Proc:
    """One benchmark process (and its children), its output in a file."""

    def __init__(self, name: str, cmd: list[str]):
        self.name = name
        safe = re.sub(r"[^\w.-]+", "_", name)
        self.path = LOGDIR / f"{next(_seq):04d}-{safe}.out"
        self._out = open(self.path, "w+b")
        self._out.write((" ".join(cmd) + "\n").encode())
        self._out.flush()
        self.popen = subprocess.Popen(
            cmd,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            env=ENV,
            cwd=ROOT,
            start_new_session=True,
        )
        self.ps = psutil.Process(self.popen.pid)
        self.peak_rss = 0
        self.peak_rss_each: list[int] = []
        self.started = time.monotonic()

    def tree(self) -> list[psutil.Process]:
        try:
            return [self.ps, *self.ps.children(recursive=True)]
        except psutil.Error:
            return []

    def cpu(self) -> float:
        """CPU seconds of the process and its live children (all their threads,
        also the threads that have ended).

        From each process's CPU-time clock (``clock_gettime`` on the clock id
        ``clock_getcpuclockid(pid)`` would return): the scheduler's nanosecond count
        for the whole thread group, threads that have exited included. Summing
        ``/proc/PID/task/*/schedstat`` sees only live threads, and missed most of the
        reference simulator's CPU, which is spent in short-lived threads (at 5 kHz:
        16 % counted of 72 %). Falls back to that sum, then to ``cpu_times`` (10 ms
        clock ticks).
        """
        total = 0.0
        for p in self.tree():
            try:
                total += _process_cpu_seconds(p.pid)
            except OSError:
                try:
                    t = p.cpu_times()
                    total += t.user + t.system
                except psutil.Error:
                    pass
        return total

    def sample_rss(self) -> int:
        each = []
        for p in self.tree():
            try:
                each.append(p.memory_info().rss)
            except psutil.Error:
                pass
        total = sum(each)
        if total > self.peak_rss:
            self.peak_rss = total
            self.peak_rss_each = each
        return total

    def text(self) -> str:
        return self.path.read_bytes().decode(errors="replace")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def wait_for(self, pattern: str, timeout: float, procs=()) -> re.Match | None:
        """Wait for a line matching ``pattern``; None on timeout or exit."""
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern, re.M)
        while True:
            m = rx.search(self.text())
            if m:
                return m
            if not self.alive() or time.monotonic() > deadline:
                return None
            for p in procs:
                p.sample_rss()
            time.sleep(0.05)

    def interrupt(self) -> None:
        if self.alive():
            try:
                self.popen.send_signal(signal.SIGINT)
            except ProcessLookupError:
                pass

    def stop(self, timeout: float = 15.0) -> int:
        """SIGINT, then SIGTERM, then SIGKILL for the whole group; returns the exit code."""
        t0 = time.monotonic()
        self.interrupt()
        for sig, wait in ((None, timeout), (signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
            if sig is not None:
                try:
                    os.killpg(self.popen.pid, sig)
                except (ProcessLookupError, PermissionError):
                    pass
            try:
                code = self.popen.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        else:
            code = -9
        self._out.close()
        self.stop_seconds = time.monotonic() - t0
        if self.stop_seconds > 3:
            log(f"    ({self.name} took {self.stop_seconds:.1f} s to stop)")
        return code


def _process_cpu_seconds(pid: int) -> float:
    """CPU time of process ``pid``, all its threads ever, from its CPU-time clock."""
    try:
        # The clock id glibc's clock_getcpuclockid(pid) makes: CPUCLOCK_SCHED of the
        # process (not of one thread).
        return time.clock_gettime_ns(((~pid) << 3) | 2) / 1e9
    except (OSError, OverflowError):
        return _schedstat_seconds(pid)


def _schedstat_seconds(pid: int) -> float:
    total = 0
    tasks = os.listdir(f"/proc/{pid}/task")
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass  # the thread ended meanwhile
    return total / 1e9


def sleep_sampling(seconds: float, procs) -> None:
    end = time.monotonic() + seconds
    while True:
        for p in procs:
            p.sample_rss()
        left = end - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(0.1, left))


def wait_quiet(max_wait: float = 10.0, threshold: float = 25.0) -> None:
    """Wait (bounded) until the machine is mostly idle: other work skews CPU figures."""
    deadline = time.monotonic() + max_wait
    while time.monotonic() < deadline:
        if psutil.cpu_percent(interval=0.3) < threshold:
            return


def uid() -> str:
    return f"pvb{os.getpid()}n{next(_seq)}"


# -- commands ------------------------------------------------------------------------


def sim_cmd(
    impl: str, channel: str, size: int, rate: float, runtime: float, std: float, shd: float = 120
) -> list:
    common = [
        "-cn",
        channel,
        "-nx",
        str(size),
        "-ny",
        str(size),
        "-dt",
        "uint8",
        "-fps",
        f"{rate:g}",
        "-rt",
        f"{runtime:g}",
        "-nf",
        str(N_DISTINCT.get(size, 20)),
        "-std",
        f"{std:g}",
        "-shd",
        f"{shd:g}",
    ]
    if impl == REF:
        return [*REF_SIM, *common, "-rp", str(10**9), "-dc"]
    return [*OUR_CMD, "sim", *common, "-rp", "0"]


SIM_READY = {OURS: r"serving ", REF: r"Expected data rate"}
SIM_DONE = {
    OURS: r"done, sent (\d+) frames in ([\d.]+) s, ([\d.]+) fps",
    REF: r"Published frames:\s+(\d+) @ ([\d.]+) fps",
}


def consumer_cmd(
    impl: str, channel: str, tag: str, sqs: int, n_consumers: int = 1, runtime: float = 600
) -> list:
    if impl == FLOOR:
        return [
            PY,
            str(BENCH / "floor.py"),
            "-ic",
            channel,
            "-sqs",
            str(sqs),
            "-rt",
            f"{runtime:g}",
            "--resolution",
            "0.25",
        ]
    common = [
        "-ic",
        channel,
        "-oc",
        f"{tag}:*:out",
        "-sc",
        f"{tag}:*:status",
        "-cc",
        f"{tag}:*:control",
        "-sqs",
        str(sqs),
        "-rt",
        f"{runtime:g}",
    ]
    if n_consumers > 1:
        common += ["-nc", str(n_consumers), "-du", "1"]
    if impl == REF:
        return [*REF_CONSUMER, *common, "-pc", REF_PASSTHROUGH, "-dc"]
    if impl == OURS_NOLAT:
        return [PY, str(BENCH / "nolatency.py"), *common, "--report-format", "json"]
    return [*OUR_CMD, "consumer", *common, "--report-format", "json"]


# -- reading statistics --------------------------------------------------------------

_NUM = r"(-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)"


def parse_ref_stats(text: str, kind: str = "consumer") -> dict[int, dict]:
    """The reference's printed statistics: the last dict printed for each stage id."""
    out: dict[int, dict] = {}
    # Each dict starts a line with "{ "; the combined stats of -nc > 1 have no id.
    for block in re.split(r"(?m)^(?=\{ )", text):
        m = re.match(r"\{ '(consumer|collector)Id': (\d+)", block)
        if not m:
            continue
        stats: dict[str, dict] = {}
        # Innermost dicts; a collector repeats receiverStats per producer: summed.
        for section in re.finditer(r"'(\w+Stats)': \{([^{}]*)\}", block):
            values = stats.setdefault(section.group(1), {})
            for k, v in re.findall(rf"'(\w+)': {_NUM}", section.group(2)):
                values[k] = values.get(k, 0.0) + float(v)
        out[int(m.group(2))] = stats
    return out


def parse_our_stats(text: str) -> dict[int, dict]:
    """Our ``--report-format json`` output: the final snapshot of each stage id."""
    out: dict[int, dict] = {}
    for line in text.splitlines():
        if not line.startswith("{"):
            continue
        try:
            snap = json.loads(line)
        except json.JSONDecodeError:
            continue
        if snap.get("final"):
            sid = snap.get("consumerId", snap.get("collectorId"))
            out[sid] = snap
    return out


def summarize(per_id: dict[int, dict]) -> dict:
    """Counts summed over stages, in one shape for ours and the reference."""

    def total(section, key):
        return sum(int(s.get(section, {}).get(key, 0) or 0) for s in per_id.values())

    lat50 = [s["processorStats"].get("latencyP50") for s in per_id.values()]
    lat99 = [s["processorStats"].get("latencyP99") for s in per_id.values()]
    return {
        "nStages": len(per_id),
        "received": total("receiverStats", "nReceived"),
        "processed": total("processorStats", "nProcessed"),
        "missed": total("processorStats", "nMissed"),
        "errors": total("processorStats", "nErrors") + total("receiverStats", "nErrors"),
        "overruns": total("receiverStats", "nOverruns"),
        "rejected": total("receiverStats", "nRejected") + total("queueStats", "nRejected"),
        "published": total("publisherStats", "nPublished"),
        "firstIds": sorted(
            int(s["processorStats"].get("firstObjectId", -1))
            for s in per_id.values()
            if "processorStats" in s
        ),
        "latencyP50": max((v for v in lat50 if v is not None), default=None),
        "latencyP99": max((v for v in lat99 if v is not None), default=None),
    }


# -- one streaming run ---------------------------------------------------------------


@dataclass
class Run:
    impl: str
    size: int
    rate: float
    n_frames: int
    n_consumers: int = 1
    sent: int = 0
    sim_rate: float = 0.0
    cpu_idle: float = 0.0
    cpu_end: float = 0.0
    rss: list = field(default_factory=list)
    stats: dict = field(default_factory=dict)
    ok: bool = False
    lossless: bool = False
    late_start: bool = False
    source_ok: bool = True
    note: str = ""

    @property
    def cpu(self) -> float:
        return self.cpu_end - self.cpu_idle


def stream_run(
    impl: str,
    size: int,
    rate: float,
    n_frames: int,
    n_consumers: int = 1,
    sqs: int | None = None,
    drain: float | None = None,
    std: float | None = None,
    probe: bool = False,
) -> Run:
    """Our simulator → one consumer set of ``impl``; counts, CPU, memory.

    CPU: ``cpu_idle`` is sampled while the consumer waits for the first frame,
    ``cpu_end`` ``drain`` seconds after the simulator's last frame, both before any
    shutdown work.
    """
    run = Run(impl, size, rate, n_frames, n_consumers)
    tag = uid()
    channel = f"{tag}:img"
    sqs = sqs if sqs is not None else SERVER_QUEUE.get(size, 500)
    runtime = n_frames / rate
    if std is None:
        std = 1.0 if n_consumers == 1 else 2.0
    if drain is None:
        drain = 1.0 + 0.1 * runtime
    wait_quiet()
    sim = Proc(f"sim-{size}-{rate:g}", sim_cmd(OURS, channel, size, rate, runtime, std))
    procs = []
    try:
        if not sim.wait_for(SIM_READY[OURS], 60):
            run.note = "simulator did not start"
            return run
        t_ready = time.monotonic()
        con = Proc(
            f"{impl}-{size}-{rate:g}-x{n_consumers}",
            consumer_cmd(impl, channel, tag, sqs, n_consumers),
        )
        procs.append(con)
        probe_proc = None
        if probe:
            probe_proc = Proc(
                f"probe-{impl}",
                [
                    PY,
                    str(BENCH / "floor.py"),
                    "-ic",
                    f"{tag}:1:out",
                    "-sqs",
                    str(sqs),
                    "-rt",
                    "600",
                    "--latency",
                    "--skip",
                    "0",
                ],
            )
            procs.append(probe_proc)
        sleep_sampling(max(0.0, t_ready + std - 0.3 - time.monotonic()), procs)
        run.cpu_idle = con.cpu()
        m = sim.wait_for(SIM_DONE[OURS], std + runtime + 30, procs)
        if not m:
            run.note = "simulator did not finish"
            return run
        run.sent, run.sim_rate = int(m.group(1)), float(m.group(3))
        run.source_ok = abs(run.sim_rate - rate) <= 0.02 * rate
        sleep_sampling(drain, procs)
        run.cpu_end = con.cpu()
        run.rss = list(con.peak_rss_each)
        for p in procs:
            p.stop()
        run.stats = consumer_stats(impl, con.text())
        if probe_proc is not None:
            res = _last_json(probe_proc.text())
            run.stats["probeP50"] = res.get("latencyP50")
            run.stats["probeP99"] = res.get("latencyP99")
            run.stats["probeN"] = res.get("nCounted")
        s = run.stats
        run.ok = impl == FLOOR or s.get("nStages", 0) == n_consumers
        run.lossless = run.ok and lossless(s, run.sent)
        # A consumer that connected after the first frame did not see the whole stream.
        run.late_start = (
            not run.lossless
            and impl != FLOOR
            and bool(s.get("firstIds"))
            and s["firstIds"][0] > 1
            and s["missed"] == 0
            and s["overruns"] == 0
        )
        return run
    finally:
        for p in procs:
            if p.alive():
                p.stop()
        sim.stop()


def consumer_stats(impl: str, text: str) -> dict:
    """A consumer set's final counts from its output, in one shape for every impl."""
    if impl == FLOOR:
        res = _last_json(text)
        return {
            "processed": res.get("nCounted", 0),
            "overruns": res.get("nOverruns", 0),
            "missed": 0,
            "rejected": 0,
            "errors": 0,
            "firstIds": [1],
        }
    if impl == REF:
        return summarize(parse_ref_stats(text))
    return summarize(parse_our_stats(text))


def lossless(stats: dict, sent: int) -> bool:
    return (
        stats["processed"] == sent
        and stats["missed"] == 0
        and stats["overruns"] == 0
        and stats["rejected"] == 0
        and stats["errors"] == 0
    )


def _last_json(text: str) -> dict:
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                pass
    return {}


def stream_run_retry(*args, **kw) -> Run:
    """A run, repeated once with a longer start delay if a consumer connected late."""
    run = stream_run(*args, **kw)
    if run.late_start or not run.ok:
        log(f"    retrying ({run.note or 'late start' if run.late_start else 'no report'})")
        kw["std"] = (kw.get("std") or 3.0) + 3.0
        run = stream_run(*args, **kw)
    return run


# -- 1. CPU per frame ------------------------------------------------------------------


def bench_cpu(cfg) -> dict:
    results = {}
    for size, rate, n1, n2 in cfg.cpu_points:
        variants = [OURS, REF, FLOOR] + ([OURS_NOLAT] if size == 128 and cfg.nolatency else [])
        per = {v: [] for v in variants}
        rss = {v: [] for v in variants}
        for rep in range(cfg.repeats):
            order = variants[rep % len(variants) :] + variants[: rep % len(variants)]
            for v in order:
                runs = []
                for n in (n1, n2) if rep % 2 == 0 else (n2, n1):
                    # The same wait after both lengths, so that it cancels too.
                    r = stream_run_retry(v, size, rate, n, drain=1.0 + 0.1 * n2 / rate)
                    runs.append(r)
                    log(
                        f"  cpu {size} {v} {n} frames: cpu {r.cpu:.3f}s lossless={r.lossless} "
                        f"sent={r.sent} processed={r.stats.get('processed')}"
                    )
                    if r.rss:
                        rss[v].append(sum(r.rss))
                short, long_ = sorted(runs, key=lambda r: r.n_frames)
                if not (short.lossless and long_.lossless):
                    log(f"  cpu {size} {v}: a run was not lossless; repeat discarded")
                    continue
                # ms per 1000 frames (= µs per frame)
                marginal = (long_.cpu - short.cpu) / (long_.sent - short.sent) * 1e6
                per[v].append(
                    {
                        "marginal": marginal,
                        "rep": rep,
                        "perRun": [r.cpu / r.sent * 1e6 for r in runs],
                    }
                )
        results[f"{size}"] = {"rate": rate, "frames": [n1, n2], "runs": per, "rss": rss}
    return results


def together_run(impls: list, size: int, rate: float, n_frames: int, drain: float) -> dict:
    """One simulator stream consumed by every impl at once; CPU and counts of each.

    All of them see the same frames under the same machine load, so their ratios
    are not moved by what else the machine is doing between runs. CPU is read
    ``drain`` seconds after the last frame.
    """
    tag = uid()
    channel = f"{tag}:img"
    std = 3.0
    runtime = n_frames / rate
    wait_quiet()
    sim = Proc(f"sim-{size}-{rate:g}-together", sim_cmd(OURS, channel, size, rate, runtime, std))
    cons: dict[str, Proc] = {}
    out: dict = {"sent": 0, "impls": {}}
    try:
        if not sim.wait_for(SIM_READY[OURS], 60):
            out["note"] = "simulator did not start"
            return out
        t_ready = time.monotonic()
        for k, impl in enumerate(impls):
            cmd = consumer_cmd(impl, channel, f"{tag}{k}", SERVER_QUEUE.get(size, 500))
            cons[impl] = Proc(f"{impl}-{size}-{rate:g}-together", cmd)
        procs = list(cons.values())
        sleep_sampling(max(0.0, t_ready + std - 0.3 - time.monotonic()), procs)
        idle = {impl: p.cpu() for impl, p in cons.items()}
        m = sim.wait_for(SIM_DONE[OURS], std + runtime + 30, procs)
        if not m:
            out["note"] = "simulator did not finish"
            return out
        sleep_sampling(drain, procs)
        end = {impl: p.cpu() for impl, p in cons.items()}
        out["sent"] = sent = int(m.group(1))
        for p in procs:
            p.stop()
        for impl, p in cons.items():
            stats = consumer_stats(impl, p.text())
            out["impls"][impl] = {
                "cpu": end[impl] - idle[impl],
                "lossless": (impl == FLOOR or stats.get("nStages") == 1) and lossless(stats, sent),
            }
        return out
    finally:
        for p in cons.values():
            if p.alive():
                p.stop()
        sim.stop()


def bench_together(cfg) -> dict:
    """Consumer CPU per frame with ours, the reference and the floor on one stream."""
    results = {}
    impls = [OURS, REF, FLOOR]
    for size, rate, n1, n2 in cfg.together_points:
        per: dict[str, list] = {v: [] for v in impls}
        for rep in range(cfg.repeats):
            # The same wait after both lengths, so that it cancels too.
            drain = 1.0 + 0.1 * n2 / rate
            short, long_ = (together_run(impls, size, rate, n, drain) for n in (n1, n2))
            for impl in impls:
                a, b = short["impls"].get(impl), long_["impls"].get(impl)
                if not (a and b):
                    why = short.get("note") or long_.get("note")
                    log(f"  together {size} {impl}: no result ({why})")
                    continue
                ok = a["lossless"] and b["lossless"] and long_["sent"] > short["sent"]
                log(
                    f"  together {size} {impl}: cpu {a['cpu']:.3f} / {b['cpu']:.3f} s for "
                    f"{short['sent']} / {long_['sent']} frames, lossless={ok}"
                )
                if ok:
                    marginal = (b["cpu"] - a["cpu"]) / (long_["sent"] - short["sent"]) * 1e6
                    per[impl].append({"marginal": marginal, "rep": rep})
        results[f"{size}"] = {"rate": rate, "frames": [n1, n2], "runs": per}
    return results


# -- 2. lossless rate ----------------------------------------------------------------


def ladder_index(rate: float) -> int:
    return min(range(len(LADDER)), key=lambda i: abs(LADDER[i] - rate))


def search(start: float, top: float):
    """Generator: yields rates to try, is sent ``(lossless, source_ok)``; returns
    ``{"rate": highest lossless rate (0 if none), "sourceLimited": bool}``.

    A rate passes when the run was lossless and the simulator achieved it. Gallops
    (2, 4, 8… ladder steps) until it has a passing rate and a failing one above it,
    then bisects to adjacent steps. A run that was lossless although the simulator
    fell short ends the search once a rate has passed: above that, the simulator,
    not the consumer, is the limit (``sourceLimited``); the rate it did achieve is then
    the lower bound reported, when higher than the last passing step (a gallop may
    have jumped over several steps the consumer would have passed). The sender may
    add the achieved rate as a third item: ``(lossless, source_ok, achieved)``.
    """
    lo, hi = None, None  # highest index that passed, lowest that failed
    i = ladder_index(start)
    top_i = ladder_index(top)
    step = 2  # doubles while the search keeps moving one way
    limited = False
    achieved = 0.0  # best rate a lossless run got from a simulator that fell short

    def done(source_limited=False):
        rate = LADDER[lo] if lo is not None else 0
        if source_limited and achieved > rate:
            rate = round(achieved)
        return {"rate": rate, "sourceLimited": source_limited}

    while True:
        if lo is not None and hi is not None and hi - lo <= 1:
            return done(limited)
        if i > top_i:
            return done(True)
        if i < 0:
            return done()
        lossless, source_ok, *rest = yield LADDER[i]
        if lossless and source_ok:
            lo = i
            i = min(i + step, top_i + 1) if hi is None else (lo + hi) // 2
        else:
            hi = i
            if lossless:  # the simulator fell short, the consumer did not
                limited = True
                achieved = max(achieved, float(rest[0] or 0) if rest else 0.0)
                if lo is not None:
                    return done(True)
            i = max(i - step, -1) if lo is None else (lo + hi) // 2
        step *= 2
        if lo is not None and hi is not None and (i <= lo or i >= hi):
            return done(limited)


def run_searches(
    label: str, impls: list, size: int, start: dict, top: float, cfg, n_consumers: int = 1
) -> dict:
    """Interleave one search per implementation, trial by trial."""
    gens = {impl: search(start[impl], top) for impl in impls}
    pending = {impl: next(g) for impl, g in gens.items()}
    result, trials = {}, {impl: [] for impl in impls}
    while pending:
        for impl in list(pending):
            rate = pending[impl]
            n = max(int(rate * cfg.lossless_seconds), 50)
            r = stream_run_retry(impl, size, rate, n, n_consumers=n_consumers)
            if not r.lossless and not r.source_ok:
                # Lossy while the simulator also fell behind: something else took the
                # CPUs (the machine is shared). Judge the rate on a second run.
                log(f"  {label} {impl} {rate} fps: lossy with the simulator behind; again")
                r = stream_run_retry(impl, size, rate, n, n_consumers=n_consumers)
            s = r.stats
            log(
                f"  {label} {impl} {rate} fps: lossless={r.lossless} sent={r.sent} "
                f"processed={s.get('processed')} missed={s.get('missed')} "
                f"overruns={s.get('overruns')} sim {r.sim_rate:.1f} fps"
            )
            trials[impl].append(
                {
                    "rate": rate,
                    "lossless": r.lossless,
                    "sent": r.sent,
                    "simRate": r.sim_rate,
                    "stats": s,
                    "rssEach": r.rss,
                }
            )
            try:
                # On 2 cores the source and the consumers share the CPUs: a run counts
                # only if the simulator also achieved the rate.
                pending[impl] = gens[impl].send((r.lossless, r.source_ok, r.sim_rate))
            except StopIteration as stop:
                result[impl] = stop.value
                del pending[impl]
    return {"max": result, "trials": trials, "size": size, "nConsumers": n_consumers}


def bench_lossless(cfg) -> dict:
    results = {"single": {}, "multi": {}}
    guess = cfg.guesses
    for size in cfg.sizes:
        reps = []
        start = {OURS: guess[size], REF: guess[size]}
        for rep in range(cfg.search_repeats_at.get(size, cfg.search_repeats)):
            log(f"lossless {size}x{size}, repeat {rep + 1}")
            res = run_searches(
                f"{size}",
                [OURS, REF] if rep % 2 == 0 else [REF, OURS],
                size,
                start,
                cfg.max_rate,
                cfg,
            )
            reps.append(res)
            start = {k: v["rate"] or guess[size] for k, v in res["max"].items()}
        results["single"][str(size)] = reps
    for n in cfg.multi:
        size = cfg.multi_size
        reps = []
        start = {OURS: guess[size] * n, REF: guess[size] * n}
        for rep in range(cfg.search_repeats):
            log(f"lossless {size}x{size} with {n} consumers, repeat {rep + 1}")
            res = run_searches(
                f"{size}x{n}",
                [OURS, REF] if rep % 2 == 0 else [REF, OURS],
                size,
                start,
                cfg.max_rate,
                cfg,
                n_consumers=n,
            )
            reps.append(res)
            start = {k: v["rate"] or guess[size] * n for k, v in res["max"].items()}
        results["multi"][str(n)] = reps
    return results


# -- 3. simulator accuracy -------------------------------------------------------------


def sim_run(impl: str, rate: float, seconds: float) -> dict:
    tag = uid()
    channel = f"{tag}:img"
    std = 2.0
    wait_quiet()
    # A short shutdown delay: the reference prints its figures only after it, and
    # ignores SIGINT meanwhile.
    sim = Proc(f"simacc-{impl}-{rate:g}", sim_cmd(impl, channel, 128, rate, seconds, std, shd=1.0))
    client = None
    samples: list[tuple[float, float]] = []
    try:
        if not sim.wait_for(SIM_READY[impl], 60):
            return {"error": "simulator did not start"}
        client = Proc(
            f"meter-{impl}-{rate:g}",
            [
                PY,
                str(BENCH / "floor.py"),
                "-ic",
                channel,
                "-sqs",
                "5000",
                "-rt",
                "600",
                "--resolution",
                "0.002",
            ],
        )
        deadline = time.monotonic() + std + seconds + 30
        rx = re.compile(SIM_DONE[impl])
        m = None
        while time.monotonic() < deadline:
            alive = sim.alive()
            if alive:
                samples.append((time.time(), sim.cpu()))
            m = rx.search(sim.text())
            if m or not alive:
                break
            time.sleep(0.05)
        time.sleep(0.5)
        client.stop()
        res = _last_json(client.text())
        sim.stop()
        if not m or not res:
            return {"error": "no report"}
        n = res["nCounted"]
        t0, t1 = res["firstTime"], res["lastTime"]
        measured = (n - 1) / (t1 - t0) if t1 > t0 and n > 1 else 0.0
        cpu = _cpu_between(samples, t0, t1)
        return {
            "requested": rate,
            "reported": float(m.group(3) if impl == OURS else m.group(2)),
            "sent": int(m.group(1)),
            "received": n,
            "measured": measured,
            "cpuPercent": 100 * cpu / (t1 - t0) if t1 > t0 else 0.0,
            "overruns": res.get("nOverruns"),
        }
    finally:
        if client is not None and client.alive():
            client.stop()
        sim.stop()


def _cpu_between(samples, t0, t1) -> float:
    def at(t):
        for (ta, ca), (tb, cb) in itertools.pairwise(samples):
            if ta <= t <= tb:
                return ca + (cb - ca) * ((t - ta) / (tb - ta) if tb > ta else 0)
        return samples[0][1] if t < samples[0][0] else samples[-1][1]

    return at(t1) - at(t0) if samples else 0.0


def bench_sim(cfg) -> dict:
    out = {OURS: {}, REF: {}}
    for rate in cfg.sim_rates:
        for rep in range(cfg.repeats):
            for impl in [OURS, REF] if rep % 2 == 0 else [REF, OURS]:
                r = sim_run(impl, rate, cfg.sim_seconds)
                log(f"  sim {impl} {rate} fps: {r}")
                out[impl].setdefault(str(rate), []).append(r)
    return out


# -- 4. collector ----------------------------------------------------------------------


def collector_run(impl: str, rate: float, seconds: float, n_producers: int = 4) -> dict:
    tag = uid()
    prefix = f"{tag}:p"
    std = 2.5
    wait_quiet()
    src = Proc(
        f"producers-{rate:g}",
        [
            PY,
            str(BENCH / "producers.py"),
            "--channel-prefix",
            prefix,
            "-np",
            str(n_producers),
            "-fps",
            f"{rate:g}",
            "-rt",
            f"{seconds:g}",
            "-std",
            f"{std:g}",
            "-shd",
            "120",
        ],
    )
    coll = None
    try:
        if not src.wait_for("serving", 60):
            return {"error": "producers did not start"}
        t_ready = time.monotonic()
        ids = ",".join(str(i + 1) for i in range(n_producers))
        common = [
            "-ic",
            f"{prefix}*",
            "-pid",
            ids,
            "-oc",
            f"{tag}:c:out",
            "-sc",
            f"{tag}:c:status",
            "-cc",
            f"{tag}:c:control",
            "-sqs",
            "2000",
            "-rt",
            "600",
        ]
        if impl == REF:
            cmd = [*REF_COLLECTOR, *common, "-pc", REF_PASSTHROUGH, "-dc"]
        else:
            cmd = [*OUR_CMD, "collector", *common, "--report-format", "json"]
        coll = Proc(f"collector-{impl}-{rate:g}", cmd)
        sleep_sampling(max(0.0, t_ready + std - 0.3 - time.monotonic()), [coll])
        cpu0 = coll.cpu()
        m = src.wait_for(
            r"sent (\d+) frames in ([\d.]+) s, ([\d.]+) fps", std + seconds + 30, [coll]
        )
        if not m:
            return {"error": "producers did not finish"}
        sent, achieved = int(m.group(1)), float(m.group(3))
        sleep_sampling(1.0 + 0.1 * seconds, [coll])
        cpu = coll.cpu() - cpu0
        rss = coll.peak_rss
        coll.stop()
        text = coll.text()
        per = parse_ref_stats(text, "collector") if impl == REF else parse_our_stats(text)
        s = summarize(per)
        if impl == REF:
            s["rejected"] += int(
                next(iter(per.values()), {}).get("collectorStats", {}).get("nRejected", 0)
            )
        # The reference also processes the producers' initial objects (id 0): more
        # processed than sent is not a loss.
        lossless = (
            len(per) == 1
            and sent <= s["processed"] <= sent + n_producers
            and s["missed"] == 0
            and s["rejected"] == 0
            and s["errors"] == 0
            and s["overruns"] == 0
        )
        return {
            "rate": rate,
            "sent": sent,
            "sourceRate": achieved,
            "sourceOk": achieved >= 0.98 * rate,
            "lossless": lossless,
            "cpu": cpu,
            "cpuPer1000": cpu / sent * 1e6 if sent else 0.0,
            "rss": rss,
            "stats": s,
        }
    finally:
        if coll is not None and coll.alive():
            coll.stop()
        src.stop()


def bench_collector(cfg) -> dict:
    out = {"search": {}, "cpu": {OURS: [], REF: []}}
    impls = (OURS, REF) if cfg.collector_search else ()
    gens = {impl: search(cfg.collector_start, cfg.max_rate) for impl in impls}
    pending = {impl: next(g) for impl, g in gens.items()}
    trials = {OURS: [], REF: []}
    while pending:
        for impl in list(pending):
            rate = pending[impl]
            r = collector_run(impl, rate, cfg.lossless_seconds)
            log(
                f"  collector {impl} {rate} fps: lossless={r.get('lossless')} "
                f"sent={r.get('sent')} at {r.get('sourceRate')} fps, stats={r.get('stats')}"
            )
            trials[impl].append(r)
            try:
                pending[impl] = gens[impl].send(
                    (bool(r.get("lossless")), r.get("sourceOk", True), r.get("sourceRate"))
                )
            except StopIteration as stop:
                out["search"][impl] = stop.value
                del pending[impl]
    out["trials"] = trials
    for rep in range(cfg.small_repeats):
        for impl in [OURS, REF] if rep % 2 == 0 else [REF, OURS]:
            r = collector_run(impl, cfg.collector_cpu_rate, cfg.lossless_seconds + 2)
            log(
                f"  collector cpu {impl}: {r.get('cpuPer1000')} ms/1000 frames, "
                f"lossless={r.get('lossless')}"
            )
            out["cpu"][impl].append(r)
    return out


# -- 5. latency ------------------------------------------------------------------------


def bench_latency(cfg) -> dict:
    out = {}
    for size, rate in cfg.latency_points:
        per = {OURS: [], REF: []}
        for rep in range(cfg.small_repeats):
            for impl in [OURS, REF] if rep % 2 == 0 else [REF, OURS]:
                n = int(rate * cfg.latency_seconds)
                r = stream_run_retry(impl, size, rate, n, probe=True)
                s = r.stats
                log(
                    f"  latency {size} {impl}: probe p50 {s.get('probeP50')} p99 "
                    f"{s.get('probeP99')} own p50 {s.get('latencyP50')} p99 {s.get('latencyP99')}"
                )
                per[impl].append(
                    {
                        "lossless": r.lossless,
                        "probeP50": s.get("probeP50"),
                        "probeP99": s.get("probeP99"),
                        "probeN": s.get("probeN"),
                        "ownP50": s.get("latencyP50"),
                        "ownP99": s.get("latencyP99"),
                    }
                )
        out[str(size)] = {"rate": rate, "runs": per}
    return out


# -- the report ------------------------------------------------------------------------


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        from importlib.metadata import version

        pvapy_version = version("pvapy")
    except Exception:  # noqa: BLE001
        pvapy_version = "unknown"
    return {
        "cpu": cpu,
        "cores": psutil.cpu_count(logical=True),
        "memoryGiB": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "pvapy": pvapy_version,
        "os": f"{platform.system()} {platform.release()}",
    }


def fmt(v, spec=".3g"):
    if v is None:
        return "—"
    if isinstance(v, float) and math.isnan(v):
        return "—"
    return format(v, spec)


def write_report(results: dict, cfg, docs: Path) -> None:
    from report import plot, render

    md, plot_data = render(results, cfg)
    docs.mkdir(parents=True, exist_ok=True)
    (docs / "benchmarks.md").write_text(md)
    if plot_data and plot_data.get("sizes"):
        (docs / "img").mkdir(parents=True, exist_ok=True)
        plot(plot_data, docs / "img" / "lossless_rate.png")


def _git_commit() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return "unknown"
    return head + (" (src modified)" if dirty else "")


# -- main ------------------------------------------------------------------------------


@dataclass
class Config:
    quick: bool
    repeats: int
    small_repeats: int  # collector CPU and latency
    search_repeats: int
    # More searches where single runs near the limit pass or fail at random.
    search_repeats_at: dict
    cpu_points: list
    together_points: list
    nolatency: bool
    sizes: list
    guesses: dict
    multi: list
    multi_size: int
    lossless_seconds: float
    max_rate: float
    sim_rates: list
    sim_seconds: float
    collector_search: bool
    collector_start: float
    collector_cpu_rate: float
    latency_points: list
    latency_seconds: float


def make_config(quick: bool) -> Config:
    # Where the searches start: near the results of earlier runs on this machine.
    guesses = {128: 20000, 512: 8000, 1024: 3150, 2048: 800}
    if quick:
        return Config(
            quick=True,
            repeats=1,
            small_repeats=1,
            search_repeats=1,
            search_repeats_at={},
            cpu_points=[(128, 5000, 2500, 10000)],
            together_points=[(1024, 400, 400, 1600)],
            nolatency=False,
            sizes=[128, 1024],
            guesses=guesses,
            multi=[],
            multi_size=512,
            lossless_seconds=2.0,
            max_rate=40000,
            sim_rates=[10000],
            sim_seconds=2.0,
            collector_search=False,
            collector_start=4000,
            collector_cpu_rate=2000,
            latency_points=[(128, 1000)],
            latency_seconds=2.0,
        )
    return Config(
        quick=False,
        repeats=3,
        small_repeats=2,
        search_repeats=2,
        search_repeats_at={1024: 3, 2048: 4},
        cpu_points=[(128, 5000, 2500, 20000), (1024, 800, 400, 4000)],
        together_points=[(1024, 400, 800, 4000)],
        nolatency=True,
        sizes=[128, 512, 1024, 2048],
        guesses=guesses,
        multi=[2, 4],
        multi_size=512,
        lossless_seconds=3.0,
        max_rate=40000,
        sim_rates=[1000, 5000, 10000, 20000],
        sim_seconds=3.0,
        collector_search=True,
        collector_start=12500,
        collector_cpu_rate=2000,
        latency_points=[(128, 1000), (1024, 200)],
        latency_seconds=4.0,
    )


BENCHES = {
    "cpu": bench_cpu,
    "together": bench_together,
    "lossless": bench_lossless,
    "sim": bench_sim,
    "collector": bench_collector,
    "latency": bench_latency,
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="pvhpc vs reference benchmarks")
    p.add_argument("--quick", action="store_true", help="fewer repeats and points (~3 min)")
    p.add_argument(
        "--only", default=",".join(BENCHES), help="comma-separated: " + ",".join(BENCHES)
    )
    p.add_argument(
        "--results",
        default=None,
        help="raw results file [benchmarks/results.json; --quick: out/bench/results-quick.json]",
    )
    p.add_argument(
        "--report-only",
        action="store_true",
        help="rewrite docs from the results file without running anything",
    )
    args = p.parse_args(argv)
    # Started in the background by a shell, we inherit SIGINT ignored, and so would
    # every process we start: the reference's commands then never stop on SIGINT.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    cfg = make_config(args.quick)
    sys.path.insert(0, str(BENCH))
    # A quick run is a smoke test: it never replaces the full figures in docs/.
    if args.results:
        results_path = Path(args.results)
    else:
        results_path = LOGDIR / "results-quick.json" if args.quick else BENCH / "results.json"
    docs = LOGDIR if args.quick else ROOT / "docs"
    if args.report_only:
        write_report(json.loads(results_path.read_text()), cfg, docs)
        return 0
    LOGDIR.mkdir(parents=True, exist_ok=True)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(only) - set(BENCHES)
    if unknown:
        p.error(f"--only: unknown benchmark(s) {', '.join(sorted(unknown))}")
    # --only keeps the other benchmarks' earlier figures.
    previous = json.loads(results_path.read_text()) if results_path.is_file() else {}
    results = dict(previous) if set(only) != set(BENCHES) else {}
    results["machine"] = machine()
    results["mode"] = "quick" if args.quick else "full"
    results["commit"] = _git_commit()
    for name in only:
        log(f"== {name}")
        t = time.monotonic()
        results[name] = BENCHES[name](cfg)
        results.setdefault("seconds", {})[name] = round(time.monotonic() - t, 1)
        results_path.write_text(json.dumps(results, indent=1, default=str))
    # The time of every benchmark whose figures the report shows, --only or not.
    results["wallSeconds"] = round(sum(results["seconds"].values()), 1)
    results["date"] = time.strftime("%Y-%m-%d %H:%M")
    results_path.write_text(json.dumps(results, indent=1, default=str))
    write_report(results, cfg, docs)
    log(f"done in {results['wallSeconds']:.0f} s; wrote {docs / 'benchmarks.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
