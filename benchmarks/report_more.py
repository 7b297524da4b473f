"""More sections of ``docs/benchmarks.md``: the simulators, latency, and the
lossless-rate plot. Used by ``report.py``."""

from __future__ import annotations

from pathlib import Path

from report_cpu import OURS, REF, f, med


def ratio(a, b):
    return a / b if a is not None and b else None


def sim_section(w, sim: dict) -> None:
    w("## 3. Simulator rate accuracy\n")
    w(
        "Each simulator serving 128×128 uint8 frames to one bare monitor (server queue "
        "5000). *Measured*: frames counted by the monitor over the time between the "
        "first and the last arrival; *reported*: the simulator's own final figure. CPU: "
        "the simulator process over the same span, every thread (its server threads, "
        "and threads that ended meanwhile: the reference publishes from short-lived "
        "threads).\n"
    )
    w(
        "| requested | ours measured | error | ours CPU | reference measured | error | "
        "reference CPU | CPU ours/reference |"
    )
    w("|---|---|---|---|---|---|---|---|")
    rates = sorted({int(r) for impl in sim.values() for r in impl}, key=int)
    for rate in rates:
        row = {}
        for impl in (OURS, REF):
            runs = [r for r in sim.get(impl, {}).get(str(rate), []) if "measured" in r]
            row[impl] = {
                "measured": med(r["measured"] for r in runs),
                "cpu": med(r["cpuPercent"] for r in runs),
                "reported": med(r["reported"] for r in runs),
            }
        o, r = row[OURS], row[REF]

        def err(x, rate=rate):
            return "—" if x is None else f"{(x - rate) / rate:+.2%}"

        w(
            f"| {rate} fps | {f(o['measured'], '.1f')} | {err(o['measured'])} | "
            f"{f(o['cpu'], '.0f')} % | {f(r['measured'], '.1f')} | {err(r['measured'])} | "
            f"{f(r['cpu'], '.0f')} % | **{f(ratio(o['cpu'], r['cpu']), '.2f')}** |"
        )
    w("")
    cheaper = [
        rate
        for rate in rates
        if (o := cpu_at(sim, OURS, rate)) is not None
        and (r := cpu_at(sim, REF, rate)) is not None
        and o < r
    ]
    w(
        "Both simulators keep the rate where the machine allows; ours also at 10 kHz, "
        "where the reference falls behind on this machine, and it gets further at 20 kHz. "
        + (
            "Ours uses less CPU than the reference at every rate. "
            if cheaper == rates
            else "Ours uses more CPU than the reference at every rate. "
            if not cheaper
            else "Ours uses less CPU than the reference at "
            + ", ".join(f"{rate} fps" for rate in cheaper)
            + " only. "
        )
        + "See the simulator's documentation for how ours paces and publishes.\n"
    )
    w(
        "Reported by the simulators themselves (median): "
        + "; ".join(
            f"{rate} fps: ours "
            f"{f(med(r.get('reported') for r in sim.get(OURS, {}).get(str(rate), [])), '.2f')}, "
            f"reference "
            f"{f(med(r.get('reported') for r in sim.get(REF, {}).get(str(rate), [])), '.2f')}"
            for rate in rates
        )
        + ".\n"
    )


def cpu_at(sim: dict, impl: str, rate: int) -> float | None:
    """Median CPU % of one simulator at one rate (None without a measured run)."""
    return med(r["cpuPercent"] for r in sim.get(impl, {}).get(str(rate), []) if "measured" in r)


def latency_section(w, lat: dict) -> None:
    w("## 5. Frame latency\n")
    w(
        "Source timestamp (set by the simulator when it publishes) to arrival of the "
        "frame on the consumer's output channel, seen by a probe monitoring that channel "
        "(`floor.py --latency`): the same path for both. Ours also reports source → "
        "processed itself (`processorStats.latencyP50/latencyP99`, sampled at about 200 "
        "frames per second on fast streams).\n"
    )
    w(
        "| frame | rate | ours p50 ms | ours p99 ms | reference p50 ms | reference p99 ms | "
        "p50 ours/reference | ours' own p50 / p99 ms |"
    )
    w("|---|---|---|---|---|---|---|---|")
    for size, block in lat.items():
        runs = block["runs"]

        def m(impl, key, runs=runs):
            v = med(r.get(key) for r in runs.get(impl, []))
            return v * 1e3 if v is not None else None

        ratios = [
            a["probeP50"] / b["probeP50"]
            for a, b in zip(runs.get(OURS, []), runs.get(REF, []))
            if a.get("probeP50") and b.get("probeP50")
        ]
        w(
            f"| {size}×{size} | {block['rate']} fps | {f(m(OURS, 'probeP50'))} | "
            f"{f(m(OURS, 'probeP99'))} | {f(m(REF, 'probeP50'))} | {f(m(REF, 'probeP99'))} | "
            f"**{f(med(ratios), '.2f')}** | {f(m(OURS, 'ownP50'))} / {f(m(OURS, 'ownP99'))} |"
        )
    w("")


def plot(data: dict, path: Path) -> None:
    """Lossless rate against frame size, ours and the reference, log-log."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    sizes = data["sizes"]
    pixels = [s * s for s in sizes]
    for impl, key, colour, label in (
        (OURS, "ours", "tab:blue", "pvhpc"),
        (REF, "ref", "tab:orange", "reference (PvaPy)"),
    ):
        runs_key, limited = f"{key}Runs", data.get(f"{key}Limited") or [False] * len(sizes)
        pts = [(p, v) for p, v in zip(pixels, data[impl]) if v]
        if pts:
            ax.plot(*zip(*pts), "-", color=colour, label=label)
        for p, v, lim in zip(pixels, data[impl], limited):
            if v:
                # Open marker: the simulator was the limit, the rate a lower bound.
                ax.plot(p, v, "o", color=colour, markerfacecolor="white" if lim else colour)
        for p, runs in zip(pixels, data[runs_key]):
            for v in runs:
                if v:
                    ax.plot(p, v, ".", color=colour, alpha=0.4)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(pixels)
    ax.set_xticklabels([f"{s}×{s}" for s in sizes])
    ax.minorticks_off()
    ax.set_xlabel("frame size (uint8)")
    ax.set_ylabel("highest lossless rate, frames/s")
    ax.set_title("One consumer, passthrough with output channel")
    ax.grid(True, which="major", alpha=0.3)
    ax.plot([], [], "o", color="grey", markerfacecolor="white", label="simulator-limited (≥)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
