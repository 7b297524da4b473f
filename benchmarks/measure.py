"""One measured run: a simulator, the consumers under test, their CPU, memory and
final counts (and the same for the simulators and the collector alone)."""

from __future__ import annotations

import itertools
import os
import re
import time
from dataclasses import dataclass, field

import psutil
from commands import (
    BENCH,
    ENV,
    EVEN,
    FLOORS,
    LADDER,
    LOGDIR,
    OUR_CMD,
    OURS,
    PY,
    REF,
    REF_COLLECTOR,
    REF_PASSTHROUGH,
    SERVER_QUEUE,
    SIM_DONE,
    SIM_READY,
    _last_json,
    consumer_cmd,
    consumer_stats,
    lossless,
    parse_our_stats,
    parse_ref_stats,
    sim_cmd,
    summarize,
    uid,
)

from harness import Proc as _Proc
from harness import log


def Proc(name: str, cmd: list, cpus: set[int] | None = None) -> _Proc:  # noqa: N802
    """A benchmark process with the benchmarks' environment, its output in out/bench."""
    return _Proc(name, cmd=cmd, logdir=LOGDIR, env=ENV, cpus=cpus)


def own_cores(n_consumers: int) -> tuple[set[int] | None, set[int] | None]:
    """``(source's cores, consumer's cores)``: one consumer gets a core of its own, the
    last one, and the source (and any probe) the others, as a detector's consumer would
    have; consumer sets, and a one-core machine, run where the kernel puts them. On two
    cores this also takes away most of the run-to-run spread (the kernel otherwise
    moves the source onto the consumer's core now and then)."""
    cores = sorted(os.sched_getaffinity(0))
    if n_consumers != 1 or len(cores) < 2:
        return None, None
    return set(cores[:-1]), {cores[-1]}


def sleep_sampling(seconds: float, procs) -> None:
    end = time.monotonic() + seconds
    while True:
        for p in procs:
            p.sample_rss()
        left = end - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(0.1, left))


# Runs started, and those before which the machine stayed busy (other work) for the
# whole wait: the report says the figures come from a shared machine.
# "load": the machine's CPU use (percent of all cores) just before each run, when
# none of ours is running: other work.
QUIET: dict = {"runs": 0, "busy": 0, "load": []}


def wait_quiet(max_wait: float = 10.0, threshold: float = 25.0) -> None:
    """Wait (bounded) until the machine is mostly idle: other work skews CPU figures."""
    QUIET["runs"] += 1
    deadline = time.monotonic() + max_wait
    first = True
    while time.monotonic() < deadline:
        load = psutil.cpu_percent(interval=0.3)
        if first:
            QUIET["load"].append(round(load, 1))
            first = False
        if load < threshold:
            return
    QUIET["busy"] += 1


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
    source: str = EVEN,
    processor: tuple | dict = (),
) -> Run:
    """A simulator (``source``: ours evenly paced or in bursts, or the reference's)
    → one consumer set of ``impl``; counts, CPU, memory. ``processor``: the arguments
    naming the processor (or a dict of them by ``impl``); none, the passthrough.

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
    sim_impl = REF if source == REF else OURS
    # The reference prints its figures only after its shutdown delay: a short one.
    shd = 1.0 if sim_impl == REF else 120
    source_cores, consumer_cores = own_cores(n_consumers)
    sim = Proc(
        f"sim-{source}-{size}-{rate:g}",
        sim_cmd(sim_impl, channel, size, rate, runtime, std, shd=shd, pacing=source),
        source_cores,
    )
    procs = []
    try:
        if not sim.wait_line(SIM_READY[sim_impl], 60):
            run.note = "simulator did not start"
            return run
        t_ready = time.monotonic()
        con = Proc(
            f"{impl}-{size}-{rate:g}-x{n_consumers}",
            consumer_cmd(
                impl,
                channel,
                tag,
                sqs,
                n_consumers,
                processor=processor.get(impl, ()) if isinstance(processor, dict) else processor,
            ),
            consumer_cores,
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
                source_cores,
            )
            procs.append(probe_proc)
        sleep_sampling(max(0.0, t_ready + std - 0.3 - time.monotonic()), procs)
        run.cpu_idle = con.cpu()
        m = sim.wait_line(SIM_DONE[sim_impl], std + runtime + shd + 30, procs)
        if not m:
            run.note = "simulator did not finish"
            return run
        run.sent = int(m.group(1))
        run.sim_rate = float(m.group(3) if sim_impl == OURS else m.group(2))
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
        run.ok = impl in FLOORS or s.get("nStages", 0) == n_consumers
        run.lossless = run.ok and lossless(s, run.sent)
        # A consumer that connected after the first frame did not see the whole stream.
        run.late_start = (
            not run.lossless
            and impl not in FLOORS
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


def stream_run_retry(*args, **kw) -> Run:
    """A run, repeated once with a longer start delay if a consumer connected late."""
    run = stream_run(*args, **kw)
    if run.late_start or not run.ok:
        log(f"    retrying ({run.note or 'late start' if run.late_start else 'no report'})")
        kw["std"] = (kw.get("std") or 3.0) + 3.0
        run = stream_run(*args, **kw)
    return run


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
        if not sim.wait_line(SIM_READY[OURS], 60):
            out["note"] = "simulator did not start"
            return out
        t_ready = time.monotonic()
        for k, impl in enumerate(impls):
            cmd = consumer_cmd(impl, channel, f"{tag}{k}", SERVER_QUEUE.get(size, 500))
            cons[impl] = Proc(f"{impl}-{size}-{rate:g}-together", cmd)
        procs = list(cons.values())
        sleep_sampling(max(0.0, t_ready + std - 0.3 - time.monotonic()), procs)
        idle = {impl: p.cpu() for impl, p in cons.items()}
        m = sim.wait_line(SIM_DONE[OURS], std + runtime + 30, procs)
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
                "lossless": (impl in FLOORS or stats.get("nStages") == 1) and lossless(stats, sent),
            }
        return out
    finally:
        for p in cons.values():
            if p.alive():
                p.stop()
        sim.stop()


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
        if not sim.wait_line(SIM_READY[impl], 60):
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
        if not src.wait_line("serving", 60):
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
        m = src.wait_line(
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
