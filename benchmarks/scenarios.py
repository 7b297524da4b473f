"""The benchmarks ``run.py`` runs: each takes the configuration and returns its raw
results (a JSON-able dict)."""

from __future__ import annotations

import json

from commands import (
    BENCH,
    BURST,
    EVEN,
    FLOOR,
    FLOOR_IDS,
    FLOOR_PUB,
    FLOOR_QUEUE,
    OURS,
    OURS_NOLAT,
    OURS_NOOC,
    OURS_RQS,
    PY,
    REF,
)
from measure import (
    Proc,
    collector_run,
    own_cores,
    search,
    sim_run,
    stream_run_retry,
    together_run,
    wait_quiet,
)

from harness import ROOT, log

# -- 1. CPU per frame ------------------------------------------------------------------


# Every consumer the headline compares, and the floors beside them.
CPU_VARIANTS = (OURS, OURS_NOOC, OURS_RQS, REF, FLOOR, FLOOR_PUB)


def cpu_block(
    label: str,
    size: int,
    rate: float,
    n1: int,
    n2: int,
    variants: list,
    repeats: int,
    source: str = EVEN,
    processor: tuple = (),
) -> dict:
    """Marginal CPU per frame of each variant, alone on the machine, ``repeats`` times.

    Each repeat runs every variant (in an order that rotates) on two stream lengths
    ``n1`` and ``n2`` from ``source``: the difference of CPU over the difference of
    frames, so that start-up and shutdown cancel. A repeat counts only if both runs
    were lossless.
    """
    per = {v: [] for v in variants}
    rss = {v: [] for v in variants}
    for rep in range(repeats):
        order = variants[rep % len(variants) :] + variants[: rep % len(variants)]
        for v in order:
            runs = []
            for n in (n1, n2) if rep % 2 == 0 else (n2, n1):
                # The same wait after both lengths, so that it cancels too.
                r = stream_run_retry(
                    v,
                    size,
                    rate,
                    n,
                    drain=1.0 + 0.1 * n2 / rate,
                    source=source,
                    processor=processor,
                )
                runs.append(r)
                log(
                    f"  {label} {source} {size} {v} {n} frames: cpu {r.cpu:.3f}s "
                    f"lossless={r.lossless} sent={r.sent} processed={r.stats.get('processed')} "
                    f"source {r.sim_rate:.0f} fps"
                )
                if r.rss:
                    rss[v].append(sum(r.rss))
            short, long_ = sorted(runs, key=lambda r: r.n_frames)
            if not (short.lossless and long_.lossless) or long_.sent <= short.sent:
                log(f"  {label} {size} {v}: a run was not lossless; repeat discarded")
                continue
            # ms per 1000 frames (= µs per frame)
            marginal = (long_.cpu - short.cpu) / (long_.sent - short.sent) * 1e6
            per[v].append(
                {
                    "marginal": marginal,
                    "rep": rep,
                    "perRun": [r.cpu / r.sent * 1e6 for r in runs],
                    # A loaded machine can hold the source below its rate: shown.
                    "simRates": [r.sim_rate for r in runs],
                }
            )
    return {"rate": rate, "frames": [n1, n2], "runs": per, "rss": rss, "source": source}


def bench_cpu(cfg) -> dict:
    """The headline: one consumer alone at a time, ours (with and without an output
    channel, and with a receiver queue), the reference and both floors alternating,
    on an evenly paced source (ours, and the reference's simulator), then once more
    on our simulator in bursts."""
    out: dict = {"sources": {}}
    for source in cfg.cpu_sources:
        repeats = cfg.burst_repeats if source == BURST else cfg.cpu_repeats
        blocks = {}
        for size, rate, n1, n2 in cfg.cpu_points:
            variants = list(CPU_VARIANTS)
            if source != BURST:
                # The least a consumer that accounts for every frame does: read its id.
                variants.append(FLOOR_IDS)
            if source == EVEN:
                # The limit of a receiver queue: pvaccess's own queueing monitor.
                variants.append(FLOOR_QUEUE)
            if size == 128 and cfg.nolatency and source == EVEN:
                variants.append(OURS_NOLAT)
            blocks[str(size)] = cpu_block("cpu", size, rate, n1, n2, variants, repeats, source)
        out["sources"][source] = blocks
    return out


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


def run_searches(
    label: str,
    impls: list,
    size: int,
    start: dict,
    top: float,
    cfg,
    n_consumers: int = 1,
    processor: tuple = (),
) -> dict:
    """Interleave one search per implementation, trial by trial."""
    gens = {impl: search(start[impl], top) for impl in impls}
    pending = {impl: next(g) for impl, g in gens.items()}
    result, trials = {}, {impl: [] for impl in impls}
    while pending:
        for impl in list(pending):
            rate = pending[impl]
            n = max(int(rate * cfg.lossless_seconds), 50)
            r = stream_run_retry(impl, size, rate, n, n_consumers=n_consumers, processor=processor)
            if not r.lossless and not r.source_ok:
                # Lossy while the simulator also fell behind: something else took the
                # CPUs (the machine is shared). Judge the rate on a second run.
                log(f"  {label} {impl} {rate} fps: lossy with the simulator behind; again")
                r = stream_run_retry(
                    impl, size, rate, n, n_consumers=n_consumers, processor=processor
                )
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


# -- 6. a processor that does work ---------------------------------------------------

# A moving average of the last 3 frames: the reference runs a processor file written
# against its user API (the interoperability tests' fixture), ours the same
# computation on pvhpc's AdImageProcessor (benchmarks/moving_average.py).
WORK_ARGS = ("-pc", "MovingAverageProcessor", "-pa", json.dumps({"nFrames": 3}))
WORK_FILES = {
    OURS: ROOT / "benchmarks" / "moving_average.py",
    REF: ROOT / "tests" / "interop" / "pvapy_processors" / "movingAverageProcessor.py",
}
WORK_PROCESSOR = {impl: ("-pf", str(path), *WORK_ARGS) for impl, path in WORK_FILES.items()}


def bench_work(cfg) -> dict:
    """CPU per frame and highest lossless rate of a processor that reads each frame
    as a numpy array and publishes a derived one, ours against the reference."""
    out: dict = {"cpu": {}, "lossless": {}, "processor": "moving average of 3 frames"}
    for size, rate, n1, n2 in cfg.work_points:
        out["cpu"][str(size)] = cpu_block(
            "work", size, rate, n1, n2, [OURS, REF], cfg.work_repeats, EVEN, WORK_PROCESSOR
        )
    for size, guess in cfg.work_search.items():
        start = {OURS: guess, REF: guess}
        reps = []
        for rep in range(cfg.work_search_repeats):
            res = run_searches(
                f"work {size}",
                [OURS, REF] if rep % 2 == 0 else [REF, OURS],
                size,
                start,
                cfg.max_rate,
                cfg,
                processor=WORK_PROCESSOR,
            )
            reps.append(res)
            start = {k: v["rate"] or guess for k, v in res["max"].items()}
        out["lossless"][str(size)] = reps
    return out


# -- our callback's own cost, without the transport -------------------------------------


def bench_callback(cfg) -> dict:
    """``callback_cost.py``: what our consumer's callback adds to the floors' callbacks,
    timed in one process on the consumer's core, without and with ``-oc``."""
    out: dict = {}
    _, cores = own_cores(1)
    for size, frames in cfg.callback_points:
        for output in (False, True):
            wait_quiet()
            cmd = [PY, str(BENCH / "callback_cost.py"), "--size", size, "--frames", frames]
            cmd += ["--repeats", cfg.callback_repeats, *(["-oc"] if output else [])]
            p = Proc(f"callback-{size}{'-oc' if output else ''}", cmd, cpus=cores)
            if p.popen.wait(timeout=600) != 0:
                raise RuntimeError(f"callback_cost.py failed, see {p.path}")
            res = p.reports()[-1]
            log(
                f"callback {size} {'-oc' if output else 'no -oc'}: floor {res['floorUs']:.2f} "
                f"µs, ours {res['oursUs']:.2f} µs, added {res['addedUs']:.2f} µs"
            )
            out.setdefault(str(size), {})["oc" if output else "noOc"] = res
    return out
