"""Turns ``benchmarks/results.json`` into ``docs/benchmarks.md`` and the lossless-rate plot.

Used by ``benchmarks/run.py`` (also alone: ``run.py --report-only``).
"""

from __future__ import annotations

import statistics

from commands import EVEN, FLOOR, OURS, REF
from report_cpu import (
    callback_rows,
    callback_section,
    cpu_section,
    profile_section,
    target_rows,
    together_section,
    work_section,
)
from report_more import latency_section, sim_section


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def f(v, spec=".3g", dash="—"):
    return dash if v is None else format(v, spec)


def pct(v):
    return "—" if v is None else f"{v:.0%}"


def ratio(a, b):
    return a / b if a is not None and b else None


def _paired_ratios(runs_a: list, runs_b: list, key: str) -> list:
    by_rep = {r["rep"]: r[key] for r in runs_b}
    return [r[key] / by_rep[r["rep"]] for r in runs_a if by_rep.get(r["rep"])]


def _marginal(runs: dict, impl: str):
    """Median marginal CPU per frame of ``impl`` in a CPU block's runs."""
    return med(r["marginal"] for r in runs.get(impl, []))


def _marginal_ratio(runs: dict, a: str, b: str):
    """Median over repeats of ``a``'s marginal CPU per frame over ``b``'s."""
    return med(_paired_ratios(runs.get(a, []), runs.get(b, []), "marginal"))


# The issue's targets for consumer CPU per frame, ours/reference, by frame size.
CPU_TARGETS = {"128": 0.8, "1024": 0.85}


def render(results: dict, cfg) -> tuple[str, dict]:
    out: list[str] = []
    w = out.append
    m = results.get("machine", {})
    w("# Benchmarks: pvhpc against the reference\n")
    w(
        "pvhpc's commands measured side by side with the reference implementation, PvaPy's "
        "streaming framework (the `pvapy.hpc` commands shipped in the same `pvapy` wheel), "
        "on one machine, same source, runs alternating between the two and repeated. "
        "Tables give medians; **ratio** is the median of the per-repeat ratios "
        "ours/reference (below 1 is better for CPU and latency, above 1 for rates). "
        "Regenerate with `make bench` (about 80 minutes) or "
        "`.venv/bin/python benchmarks/run.py --quick` (about 10 minutes, fewer points and one repeat); "
        "`benchmarks/results.json` holds every raw number.\n"
    )
    w("## Machine\n")
    w("| | |\n|---|---|")
    w(f"| CPU | {m.get('cpu', '?')} |")
    w(
        f"| cores | {m.get('cores', '?')} (everything below shares them: source, consumers, "
        "harness) |"
    )
    w(f"| memory | {m.get('memoryGiB', '?')} GiB |")
    w(f"| OS | {m.get('os', '?')} |")
    w(f"| Python | {m.get('python', '?')} |")
    w(f"| pvapy | {m.get('pvapy', '?')} (transport for both; the reference's commands) |")
    w(
        f"| run | {results.get('date', '?')}, {results.get('mode', '?')} mode, "
        f"{f(results.get('wallSeconds'), '.0f')} s, pvhpc {results.get('commit', '?')} |"
    )
    commits, dates = results.get("commits", {}), results.get("dates", {})
    if len(set(commits.values())) > 1:
        # An --only run replaced some sections: say which code measured each.
        w(
            "| measured by | "
            + "; ".join(
                f"{name}: pvhpc {commit}, {dates.get(name, '?')}"
                for name, commit in commits.items()
            )
            + " |"
        )
    w("")
    w(
        "All traffic is on loopback (`../shared/epics-loopback.env`). Other work on the "
        "machine disturbs CPU figures; the harness waits (at most 10 s) for the CPUs to be "
        "mostly idle before each run, and repeats.\n"
    )
    quiet = results.get("quiet") or {}
    n_runs = sum(q.get("runs", 0) for q in quiet.values())
    n_busy = sum(q.get("busy", 0) for q in quiet.values())
    loads = [v for q in quiet.values() for v in q.get("load", [])]
    other = med(loads)
    if n_runs and (n_busy / n_runs > 0.05 or (other is not None and other > 10)):
        w(
            f"**These figures are from a shared machine**: just before each run, with "
            f"none of the benchmark's processes running, other work used {f(other, '.0f')} % "
            f"of the CPUs (median over {len(loads)} runs, up to {f(max(loads), '.0f')} %)"
            + (
                f", and before {n_busy} of {n_runs} runs it was still busy after the 10 s wait"
                if n_busy
                else ""
            )
            + ". Medians and spreads over the repeats are given for that reason; take "
            "final numbers on a quiet machine.\n"
        )

    _summary_section(w, results)
    if "cpu" in results:
        cpu_section(w, results["cpu"])
    if "together" in results:
        together_section(w, results["together"])
    plot_data = {}
    if "lossless" in results:
        plot_data = _lossless_section(w, results["lossless"])
    if "sim" in results:
        sim_section(w, results["sim"])
    if "collector" in results or "cpu" in results or "lossless" in results:
        _collector_memory_section(w, results)
    if "latency" in results:
        latency_section(w, results["latency"])
    if "work" in results:
        work_section(w, results["work"], _lossless_row)
    if "callback" in results:
        callback_section(w, results["callback"], results.get("cpu") or {})
    profile_section(w)
    _method_section(w, cfg)
    return "\n".join(out) + "\n", plot_data


def _summary_section(w, results: dict) -> None:
    """The issue's targets, each with the measured figure and whether it is met."""
    rows = target_rows(results.get("cpu") or {})
    for size, label, r, stream in callback_rows(
        results.get("callback") or {}, results.get("cpu") or {}
    ):
        if stream:
            share = r["addedUs"] / stream
            rows.append(
                (
                    f"our callback's own work, {label}, {size}×{size}: share of that "
                    "floor's per-frame CPU in the stream (section 7, without the transport)",
                    "≤ 5 % (proposed restatement)",
                    f"{share:.1%}: {r['addedUs']:.2f} of {stream:.0f} µs",
                    share <= 0.05,
                )
            )
    for key, what in (("together", "ours/reference, {0}×{0}, three on one stream (secondary)"),):
        for size, block in (results.get(key) or {}).items():
            limit = CPU_TARGETS.get(size)
            if limit is None:
                continue
            r = _marginal_ratio(block["runs"], OURS, REF)
            rows.append(
                (what.format(size), f"≤ {limit}", f(r, ".2f"), r is not None and r <= limit)
            )
    single = (results.get("lossless") or {}).get("single", {})
    for size, reps in single.items():
        row = _lossless_row(reps)
        ours_lim = any(_source_limited(rep, OURS) for rep in reps)
        ref_lim = any(_source_limited(rep, REF) for rep in reps)
        met = (
            row["ours"] is not None
            and row["ref"] is not None
            and (row["ours"] >= row["ref"] or ours_lim)
        )
        note = " (both at the simulator's limit)" if ours_lim and ref_lim else ""
        if not met and row["oursAll"] and row["refAll"]:
            # Near the limit single runs pass or fail at random: show how far apart
            # the searches are, not only their medians.
            note += (
                f" (searches: ours {min(row['oursAll']):g}–{max(row['oursAll']):g}, "
                f"reference {min(row['refAll']):g}–{max(row['refAll']):g})"
            )
        rows.append(
            (
                f"lossless rate, {size}×{size}, ours vs reference",
                "≥",
                f"{row['oursText']} vs {row['refText']}{note}",
                met,
            )
        )
    sim = results.get("sim", {})
    for rate in sorted({int(r) for impl in sim.values() for r in impl}):
        if rate > 10000:
            continue
        ours = [r for r in sim.get(OURS, {}).get(str(rate), []) if "measured" in r]
        ref = [r for r in sim.get(REF, {}).get(str(rate), []) if "measured" in r]
        m = med(r["measured"] for r in ours)
        err = abs(m - rate) / rate if m else None
        c_ours, c_ref = med(r["cpuPercent"] for r in ours), med(r["cpuPercent"] for r in ref)
        rows.append(
            (
                f"simulator at {rate} fps: rate error; CPU ours vs reference",
                "≤ 1 %; less",
                f"{pct(err) if err is None else f'{err:.2%}'}; "
                f"{f(c_ours, '.0f')} % vs {f(c_ref, '.0f')} %",
                err is not None
                and err <= 0.01
                and c_ours is not None
                and c_ref is not None
                and c_ours < c_ref,
            )
        )
    if not rows:
        return
    w("## Summary against the targets\n")
    w("| target | wanted | measured | met |")
    w("|---|---|---|---|")
    for name, wanted, got, met in rows:
        w(f"| {name} | {wanted} | {got} | {'yes' if met else '**no**'} |")
    w("")
    w(
        "How far to trust a row: the brackets are the lowest and highest of the per-repeat "
        "ratios. On this shared two-core virtual machine single repeats of the same pair "
        "differ by 20–40 %, so the median of five repeats resolves about ±10 %: a row "
        "within that of its limit is neither a measured pass nor a measured failure. "
        "Where a consumer's time goes, and which distances pvaccess leaves no way to "
        "close, is in the last section.\n"
    )


def _lossless_section(w, res: dict) -> dict:
    w("## 2. Highest lossless frame rate\n")
    w(
        "One consumer (passthrough, output channel, server queue as in the seed's tests: "
        "2000/1000/500/200 frames for 128/512/1024/2048 pixels), our simulator as source "
        "(uint8). A rate is lossless when the consumer's final report shows 0 missed, 0 "
        "overruns, 0 rejected, 0 errors and processed = frames sent, the consumer "
        "caught up within a second of the last frame. Rates on a ladder 12 % apart, "
        "searched (gallop, then bisect), the search repeated. A run counts only if the "
        "simulator also achieved the requested rate (within 2 %): on 2 cores the "
        "simulator and the consumers share the CPUs. `≥` marks a result where the next "
        "rate up failed only because the simulator fell short while the consumer still "
        "took every frame: there the simulator, not the consumer, is the limit.\n"
    )
    w(
        "| frame | ours fps | reference fps | ours/reference | ours MB/s | ours runs | "
        "reference runs |"
    )
    w("|---|---|---|---|---|---|---|")
    plot = {
        "sizes": [],
        OURS: [],
        REF: [],
        "oursRuns": [],
        "refRuns": [],
        "oursLimited": [],
        "refLimited": [],
    }
    for size, reps in res.get("single", {}).items():
        row = _lossless_row(reps)
        mb = row["ours"] * int(size) ** 2 / 1e6 if row["ours"] else None
        w(
            f"| {size}×{size} | {row['oursText']} | {row['refText']} | "
            f"{row['ratioText']} | {f(mb, '.0f')} | {row['oursRuns']} | "
            f"{row['refRuns']} |"
        )
        plot["sizes"].append(int(size))
        plot[OURS].append(row["ours"])
        plot[REF].append(row["ref"])
        plot["oursRuns"].append(row["oursAll"])
        plot["refRuns"].append(row["refAll"])
        plot["oursLimited"].append(row["oursText"].startswith("≥"))
        plot["refLimited"].append(row["refText"].startswith("≥"))
    w("")
    if res.get("multi"):
        w(
            "Several consumers sharing the frames through the distributor (`-nc N -du 1`), "
            "all frames counted over the set:\n"
        )
        w("| frame | consumers | ours fps | reference fps | ours/reference |")
        w("|---|---|---|---|---|")
        for n, reps in res["multi"].items():
            row = _lossless_row(reps)
            size = reps[0].get("size", "512") if reps else "?"
            w(
                f"| {size}×{size} | {n} | {row['oursText']} | {row['refText']} | "
                f"{row['ratioText']} |"
            )
        w("")
    w("![lossless rate against frame size](img/lossless_rate.png)\n")
    return plot


def _source_limited(rep: dict, impl: str) -> bool:
    """True if the first failing rate above the result failed only because the
    simulator fell short: the consumer took every frame it was sent."""
    best = rep["max"][impl]
    if best.get("sourceLimited"):
        return True
    above = sorted(
        (t for t in rep.get("trials", {}).get(impl, []) if t["rate"] > best["rate"]),
        key=lambda t: t["rate"],
    )
    return bool(above) and bool(above[0]["lossless"])


def _bounded_ratio_text(r, ours_limited: bool, ref_limited: bool) -> str:
    """A lossless-rate ratio, as a bound where a side was held back by its source."""
    if r is None:
        return "—"
    if ours_limited and ref_limited:
        return "— (both took all the simulator sent)"
    if ours_limited:
        return f"**≥ {r:.2f}**"
    if ref_limited:
        return f"**≤ {r:.2f}**"
    return f"**{r:.2f}**"


def _lossless_row(reps: list) -> dict:
    def values(impl):
        return [
            dict(r["max"][impl], sourceLimited=_source_limited(r, impl))
            for r in reps
            if impl in r.get("max", {})
        ]

    ours, ref = values(OURS), values(REF)
    ours_rates = [v["rate"] for v in ours]
    ref_rates = [v["rate"] for v in ref]
    ratios = [a["rate"] / b["rate"] for a, b in zip(ours, ref) if b["rate"]]
    ours_lim = any(v["sourceLimited"] for v in ours)
    ref_lim = any(v["sourceLimited"] for v in ref)
    r = med(ratios)
    ratio_text = _bounded_ratio_text(r, ours_lim, ref_lim)

    def text(vals):
        if not vals:
            return "—"
        mid = med(v["rate"] for v in vals)
        limited = any(v["sourceLimited"] and v["rate"] >= mid for v in vals)
        return ("≥ " if limited else "") + f"{mid:g}"

    def runs(vals):
        return ", ".join(("≥" if v["sourceLimited"] else "") + f"{v['rate']:g}" for v in vals)

    return {
        "ours": med(ours_rates),
        "ref": med(ref_rates),
        "ratio": r,
        "ratioText": ratio_text,
        "oursText": text(ours),
        "refText": text(ref),
        "oursRuns": runs(ours),
        "refRuns": runs(ref),
        "oursAll": ours_rates,
        "refAll": ref_rates,
    }


def _collector_memory_section(w, results: dict) -> None:
    w("## 4. Collector throughput and memory\n")
    coll = results.get("collector")
    if coll:
        w(
            "A collector gathering 4 producers (`benchmarks/producers.py`: one process "
            "serving 4 channels, 128×128 frames dealt round robin, as 4 consumers behind a "
            "distributor would publish them), sorting them back into one stream and "
            "republishing it (passthrough, output channel). Lossless as in 2.\n"
        )
        s = coll.get("search", {})
        cpu = coll.get("cpu", {})
        c_ours = med(r.get("cpuPer1000") for r in cpu.get(OURS, []) if r.get("lossless"))
        c_ref = med(r.get("cpuPer1000") for r in cpu.get(REF, []) if r.get("lossless"))
        rate = (cpu.get(OURS) or [{}])[0].get("rate")
        w("| | ours | reference | ours/reference |")
        w("|---|---|---|---|")
        so, sr = s.get(OURS, {}), s.get(REF, {})
        w(
            f"| highest lossless rate, fps | {_rate_text(so)} | {_rate_text(sr)} | "
            f"{_bounded_ratio_text(ratio(so.get('rate'), sr.get('rate')), bool(so.get('sourceLimited')), bool(sr.get('sourceLimited')))} |"
        )
        w(
            f"| CPU per 1000 frames at {rate} fps, ms | {f(c_ours)} | "
            f"{f(c_ref)} | **{f(ratio(c_ours, c_ref), '.2f')}** |"
        )
        r_ours = med(r.get("rss") for r in cpu.get(OURS, []))
        r_ref = med(r.get("rss") for r in cpu.get(REF, []))
        w(
            f"| resident memory (peak), MB | {f(r_ours and r_ours / 1e6, '.0f')} | "
            f"{f(r_ref and r_ref / 1e6, '.0f')} | {f(ratio(r_ours, r_ref), '.2f')} |"
        )
        w("")
    w(
        "Resident memory per consumer (peak RSS of the consumer's process tree while "
        "streaming, divided by the number of consumers; with several consumers the "
        "parent process is shared among them):\n"
    )
    w("| setting | ours MB | reference MB | ours/reference |")
    w("|---|---|---|---|")
    cpu_even = (results.get("cpu") or {}).get("sources", {}).get(EVEN, {})
    for size, block in cpu_even.items():
        rss = block.get("rss", {})
        o, r = med(rss.get(OURS, [])), med(rss.get(REF, []))
        fl = med(rss.get(FLOOR, []))
        w(
            f"| 1 consumer, {size}×{size} at {block['rate']} fps | {f(o and o / 1e6, '.0f')} | "
            f"{f(r and r / 1e6, '.0f')} | {f(ratio(o, r), '.2f')} (floor "
            f"{f(fl and fl / 1e6, '.0f')}) |"
        )
    multi = (results.get("lossless") or {}).get("multi", {})
    for n, reps in multi.items():
        vals = {}
        for impl in (OURS, REF):
            per = [
                sum(t["rssEach"]) / int(n)
                for rep in reps
                for t in rep["trials"].get(impl, [])
                if t.get("rssEach") and t["lossless"]
            ]
            vals[impl] = max(per) if per else None
        o, r = vals[OURS], vals[REF]
        w(
            f"| {n} consumers (`-nc {n}`), lossless runs, largest | "
            f"{f(o and o / 1e6, '.0f')} | {f(r and r / 1e6, '.0f')} | {f(ratio(o, r), '.2f')} |"
        )
    w("")


def _rate_text(v: dict) -> str:
    if not v:
        return "—"
    return ("≥ " if v.get("sourceLimited") else "") + f"{v['rate']:g}"


def _method_section(w, cfg) -> None:
    w("## How it is measured\n")
    w(
        "- `benchmarks/run.py` starts every process itself (our commands as "
        "`python -m pvhpc …`, the reference's as `python -c 'from pvapy.cli.X import "
        "main; main()' …`, since our console scripts take the same names), one run at a "
        "time (except the side-by-side table, where the three consumers share one "
        "stream), with the loopback EPICS environment; each process's output is kept in "
        "`out/bench/`."
    )
    w(
        "- A run: the simulator starts with a start delay; the consumers start as soon "
        "as its channel exists and connect during the delay (a run where a consumer "
        "missed the first frame, or ended without a final report, is run again with a "
        "longer delay); after the last frame the harness waits 1 s + 10 % of the stream "
        "(CPU runs: of the longer stream), reads CPU, then stops the consumers with "
        "SIGINT and reads their final statistics (ours: `--report-format json`; the "
        "reference: its printed dictionaries)."
    )
    w(
        "- In the lossless searches a run that lost frames while the simulator also fell "
        "behind its rate (the machine is shared; something else took the CPUs) is run a "
        "second time, and the rate judged on that run."
    )
    w(
        "- CPU of a process: its CPU-time clock (`clock_gettime` on the process's CPU "
        "clock), which counts every thread it ever had; a sum over the threads alive "
        "when it is read misses those that ended, and so missed most of the reference "
        "simulator's CPU."
    )
    w(
        "- Both consumers run their defaults otherwise (processing in the monitor "
        "callback, `--skip-initial-updates 1`)."
    )
    w(
        f"- Repeats: {cfg.cpu_repeats} for consumer CPU on each evenly paced source "
        f"({cfg.burst_repeats} with bursts), {cfg.work_repeats} for the work processor's "
        f"CPU, {cfg.repeats} for the simulator, {cfg.small_repeats} for "
        f"latency and the collector's CPU; {cfg.search_repeats} "
        "searches per lossless point"
        + "".join(f", {n} at {k}×{k}" for k, n in cfg.search_repeats_at.items())
        + f", each {cfg.lossless_seconds:g} s of frames per run "
        "(the seed's tests ran 60 s; short runs with a bounded server queue still fail "
        "a consumer that cannot keep up, since its backlog outgrows the queue)."
    )
    w("")
