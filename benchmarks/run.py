"""Side-by-side benchmarks of pvhpc against the reference (PvaPy's streaming framework).

    .venv/bin/python benchmarks/run.py            # everything, about 70 minutes (make bench)
    .venv/bin/python benchmarks/run.py --quick    # smoke run, about 10 minutes
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

1. ``cpu`` (the headline): consumer CPU per frame, marginal over two stream lengths,
   one consumer alone at a time, ours (with and without ``-oc``, with ``-rqs``), the
   reference and the floors (``floor.py``, a bare monitor that counts;
   ``floor_republish.py``, one that republishes each object) alternating, on an evenly
   paced source (our simulator, and the reference's), then once more in bursts.
   ``together``: the secondary view, three consumers on one stream.
2. ``lossless``: highest lossless frame rate, one consumer per frame size, and 2 and 4
   consumers sharing the distributor.
3. ``sim``: the simulators' achieved rate and CPU at 128x128.
4. ``collector``: a collector behind 4 producers (``producers.py``): highest lossless
   rate, CPU per frame, memory; and memory per consumer from 1 and 2.
5. ``latency``: source timestamp -> arrival on the consumer's output channel.
6. ``work``: a processor that does work (moving average of 3 frames): CPU per frame
   and highest lossless rate, ours (``moving_average.py``) against the reference (its
   processor file in ``tests/interop/pvapy_processors/``).
7. ``callback``: what our consumer's callback adds to the floors' callbacks, timed in
   one process without the transport (``callback_cost.py``).

The modules: ``commands.py`` (what is run, how its statistics are read),
``measure.py`` (one measured run), ``scenarios.py`` (the benchmarks), ``report.py``
and ``report_cpu.py`` (the document), ``harness.py`` (the process class every
benchmark script shares).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import psutil  # noqa: E402
from commands import LOGDIR, ROOT, SOURCES  # noqa: E402
from measure import QUIET  # noqa: E402
from scenarios import (  # noqa: E402
    bench_callback,
    bench_collector,
    bench_cpu,
    bench_latency,
    bench_lossless,
    bench_sim,
    bench_together,
    bench_work,
)

from harness import log  # noqa: E402


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


def write_report(results: dict, cfg, docs: Path) -> None:
    from report import render
    from report_more import plot

    md, plot_data = render(results, cfg)
    docs.mkdir(parents=True, exist_ok=True)
    (docs / "benchmarks.md").write_text(md)
    if plot_data and plot_data.get("sizes"):
        try:
            import matplotlib  # noqa: F401 - the bench extra
        except ImportError:
            log("matplotlib is not installed (pip install -e '.[bench]'): plot not redrawn")
            return
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
    cpu_repeats: int  # the headline's repeats (at least 5 in a full run)
    cpu_sources: tuple  # sources of the headline: even, reference, burst
    burst_repeats: int
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
    work_points: list
    work_repeats: int
    work_search: dict
    work_search_repeats: int
    latency_seconds: float
    callback_points: list  # (size, calls per repeat)
    callback_repeats: int


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
            cpu_points=[(128, 3000, 1500, 6000)],
            cpu_repeats=1,
            cpu_sources=SOURCES,
            burst_repeats=1,
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
            work_points=[(512, 100, 100, 400)],
            work_repeats=1,
            work_search={512: 250},
            work_search_repeats=1,
            latency_seconds=2.0,
            callback_points=[(128, 20000)],
            callback_repeats=2,
        )
    return Config(
        quick=False,
        repeats=3,
        small_repeats=2,
        search_repeats=2,
        search_repeats_at={1024: 3, 2048: 4},
        cpu_points=[(128, 3000, 1500, 12000), (1024, 800, 400, 4000)],
        cpu_repeats=5,
        cpu_sources=SOURCES,
        burst_repeats=2,
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
        work_points=[(512, 100, 100, 600), (1024, 30, 30, 180)],
        work_repeats=5,
        work_search={512: 250, 1024: 63},
        work_search_repeats=2,
        latency_seconds=4.0,
        callback_points=[(128, 100000), (1024, 50000)],
        callback_repeats=5,
    )


BENCHES = {
    "cpu": bench_cpu,
    "together": bench_together,
    "lossless": bench_lossless,
    "sim": bench_sim,
    "collector": bench_collector,
    "latency": bench_latency,
    "work": bench_work,
    "callback": bench_callback,
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
    # (harness.py, imported above, restored SIGINT if a shell started us ignoring it.)
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
        # Which code measured it, and when: with --only, sections differ.
        results.setdefault("commits", {})[name] = results["commit"]
        results.setdefault("dates", {})[name] = time.strftime("%Y-%m-%d %H:%M")
        results.setdefault("quiet", {})[name] = dict(QUIET)
        QUIET.update(runs=0, busy=0, load=[])
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
