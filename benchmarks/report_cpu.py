"""The consumer CPU sections of ``docs/benchmarks.md``: the headline (one consumer
alone, evenly paced source), the same with bursts, the three-on-one-stream table and
where the time goes. Used by ``report.py``."""

from __future__ import annotations

import statistics

from commands import (
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
    REF,
)

SOURCE_NAMES = {
    EVEN: "pvhpc simulator, evenly paced (default)",
    REF: "reference simulator",
    BURST: "pvhpc simulator in bursts (`-pm burst`)",
}
# The targets: (variant, its limit, the most it may cost relative to it).
TARGETS = (
    (OURS_NOOC, FLOOR, 1.05, "ours without `-oc` / counting floor"),
    (OURS_NOOC, FLOOR_IDS, 1.05, "ours without `-oc` / frame-checking floor"),
    (OURS, FLOOR_PUB, 1.05, "ours with `-oc` / republishing floor"),
    (OURS, REF, 0.85, "ours / reference (128×128 only)"),
    (OURS_RQS, OURS, 1.10, "ours with `-rqs` / ours in the callback"),
)


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def f(v, spec=".3g", dash="—"):
    return dash if v is None else format(v, spec)


def paired_ratios(runs_a: list, runs_b: list, key: str = "marginal") -> list:
    by_rep = {r["rep"]: r[key] for r in runs_b}
    return [r[key] / by_rep[r["rep"]] for r in runs_a if by_rep.get(r["rep"])]


def marginal(runs: dict, impl: str):
    """Median marginal CPU per frame of ``impl`` in a CPU block's runs."""
    return med(r["marginal"] for r in runs.get(impl, []))


def marginal_ratio(runs: dict, a: str, b: str):
    """Median over repeats of ``a``'s marginal CPU per frame over ``b``'s."""
    return med(paired_ratios(runs.get(a, []), runs.get(b, [])))


def spread(values: list, spec: str = ".0f") -> str:
    """``median (min–max)`` of ``values``, or a dash."""
    values = [v for v in values if v is not None]
    if not values:
        return "—"
    if len(values) == 1:
        return format(values[0], spec)
    return f"{med(values):{spec}} ({min(values):{spec}}–{max(values):{spec}})"


def cell(runs: dict, impl: str) -> str:
    return spread([r["marginal"] for r in runs.get(impl, [])])


def ratio_cell(runs: dict, a: str, b: str) -> str:
    return spread(paired_ratios(runs.get(a, []), runs.get(b, [])), ".2f")


def target_rows(cpu: dict) -> list:
    """Summary rows ``(name, wanted, measured, met)`` for the headline's targets, from
    the evenly paced sources."""
    rows = []
    for source in (EVEN, REF):
        for size, block in (cpu.get("sources", {}).get(source) or {}).items():
            runs = block["runs"]
            for a, b, limit, what in TARGETS:
                if b == REF and size != "128":
                    continue
                r = marginal_ratio(runs, a, b)
                if r is None:
                    continue
                got = (
                    f"{ratio_cell(runs, a, b)}: {f(marginal(runs, a), '.0f')} µs "
                    f"vs {f(marginal(runs, b), '.0f')} µs"
                )
                rows.append(
                    (
                        f"{what}, {size}×{size}, {SOURCE_NAMES[source]}",
                        f"≤ {limit}",
                        got,
                        r <= limit,
                    )
                )
    return rows


def cpu_section(w, cpu: dict) -> None:
    sources = cpu.get("sources")
    if not sources:
        return
    w("## 1. Consumer CPU per frame, one consumer alone (the headline)\n")
    w(
        "One consumer on the machine at a time, taking an **evenly paced** stream (one "
        "frame at each deadline, as a detector publishes one frame per trigger): ours, "
        "the reference and the two floors run one after the other, in an order that "
        "rotates, every repeat. The consumer has a core of its own (affinity: the last "
        "core; the source, and any probe, on the others). Passthrough processor, server queue (`-sqs`), at a rate "
        "all of them hold without loss. CPU of the consumer's whole process tree from "
        "its CPU-time clock; **marginal**: two stream lengths per repeat, difference of "
        "CPU over difference of frames, so start-up and shutdown cancel. Cells are µs "
        "per frame (= ms per 1000 frames), median (lowest–highest) over the repeats; "
        "ratios are per repeat, then the median (spread).\n"
    )
    w(
        "The floors, bare `pvaccess` programs in `benchmarks/`: *counting floor* "
        "(`floor.py`), a monitor whose callback only counts, the limit of a consumer "
        "without an output channel; *republishing floor* (`floor_republish.py`), a "
        "monitor that counts and puts each object on a `PvaServer` record, the limit of "
        "a consumer with `-oc`. *ours* has `-oc`; *ours, no -oc* has none; *ours -rqs* "
        "is ours with `-oc` and a receiver queue (frames handed to a processing thread "
        "in batches); the reference has `-oc`. *Queueing floor* (`floor_queue.py`, "
        "evenly paced source only): pvaccess's own queueing monitor (`qMonitor` into a "
        "`PvObjectQueue`) drained by a Python thread that republishes, what a receiver "
        "queue costs when the monitor thread never enters Python. *Frame-checking floor* "
        "(`floor.py --ids`, evenly paced sources): the counting floor whose callback also "
        "reads each frame's `uniqueId` and counts the gaps, the least a consumer that "
        "accounts for every frame (processed or missed) does per frame.\n"
    )
    for source in (EVEN, REF, BURST):
        blocks = sources.get(source)
        if not blocks:
            continue
        label = SOURCE_NAMES[source]
        if source == BURST:
            w(
                "### Bursts (labelled: not what a detector sends)\n\n"
                "The same with our simulator publishing what is due once per 1 ms tick: "
                "pvAccess hands several frames over per wake-up, which flatters whoever "
                "amortizes wake-ups best.\n"
            )
        else:
            w(f"### Source: {label}\n")
        w(
            "| frame | rate | frames | ours | ours, no -oc | ours -rqs | reference | "
            "counting floor | republishing floor | ours/reference | no -oc / counting "
            "floor | ours / republishing floor | -rqs / ours |"
        )
        w("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for size, block in blocks.items():
            runs = block["runs"]
            n1, n2 = block["frames"]
            w(
                f"| {size}×{size} | {block['rate']:g} fps | {n1} / {n2} | {cell(runs, OURS)} | "
                f"{cell(runs, OURS_NOOC)} | {cell(runs, OURS_RQS)} | {cell(runs, REF)} | "
                f"{cell(runs, FLOOR)} | {cell(runs, FLOOR_PUB)} | "
                f"**{ratio_cell(runs, OURS, REF)}** | {ratio_cell(runs, OURS_NOOC, FLOOR)} | "
                f"{ratio_cell(runs, OURS, FLOOR_PUB)} | {ratio_cell(runs, OURS_RQS, OURS)} |"
            )
            if runs.get(OURS_NOLAT):
                w(
                    f"| {size}×{size}, ours with latency off | | | {cell(runs, OURS_NOLAT)} "
                    "| | | | | | | | | |"
                )
        w("")
        for size, block in blocks.items():
            runs = block["runs"]
            if runs.get(FLOOR_IDS):
                w(
                    f"Frame-checking floor at {size}×{size}: {cell(runs, FLOOR_IDS)} µs per "
                    f"frame; ours, no -oc / frame-checking floor: "
                    f"{ratio_cell(runs, OURS_NOOC, FLOOR_IDS)}.\n"
                )
            if runs.get(FLOOR_QUEUE):
                w(
                    f"Queueing floor at {size}×{size}: {cell(runs, FLOOR_QUEUE)} µs per frame; "
                    f"ours -rqs / queueing floor: {ratio_cell(runs, OURS_RQS, FLOOR_QUEUE)}.\n"
                )
        n_reps = {
            f"{size}×{size}": min((len(r) for r in b["runs"].values()), default=0)
            for size, b in blocks.items()
        }
        w(
            "Lossless repeats per variant (fewest): "
            + ", ".join(f"{k}: {v}" for k, v in n_reps.items())
            + ".\n"
        )


def cpu_table(w, blocks: dict, last_header: str, last_cell) -> None:
    """A table of marginal CPU per frame, one row per frame size, with one column of
    the caller's (``last_cell(runs)``) at the end."""
    w(
        "| frame | rate | frames | ours ms | reference ms | floor ms | ours/reference | "
        f"floor/reference | {last_header} |"
    )
    w("|---|---|---|---|---|---|---|---|---|")
    for size, block in blocks.items():
        runs = block["runs"]
        n1, n2 = block["frames"]
        w(
            f"| {size}×{size} | {block['rate']} fps | {n1} / {n2} | "
            f"{f(marginal(runs, OURS))} | {f(marginal(runs, REF))} | "
            f"{f(marginal(runs, FLOOR))} | **{f(marginal_ratio(runs, OURS, REF), '.2f')}** | "
            f"{f(marginal_ratio(runs, FLOOR, REF), '.2f')} | {last_cell(runs)} |"
        )
    w("")


def together_section(w, together: dict) -> None:
    w("### Secondary view: three consumers on one stream\n")
    w(
        "Ours, the reference and the counting floor consume **one** evenly paced stream "
        "at the same time, so each repeat compares them under the same load. This is "
        "not the headline: three consumers sharing two cores take frames in bunches, "
        "which flatters whoever amortizes wake-ups best, and each frame is sent three "
        "times. Marginal CPU as above.\n"
    )
    cpu_table(w, together, "ours/floor", lambda runs: f(marginal_ratio(runs, OURS, FLOOR), ".2f"))
    for size, block in together.items():
        runs = block["runs"]
        each = paired_ratios(runs.get(OURS, []), runs.get(REF, []))
        w(
            f"Ours/reference in each repeat at {size}×{size}: "
            + ", ".join(f"{x:.2f}" for x in each)
            + ".\n"
        )


def work_section(w, work: dict, lossless_row) -> None:
    """Section 6: a processor that does work (``lossless_row``: report.py's summary of
    a point's lossless searches)."""
    w("## 6. A processor that does work\n")
    w(
        "A moving average of the last 3 frames: each frame is read as a numpy array, "
        "summed as int64 with the two before it, averaged as float64 and published as a "
        "new NTNDArray on the output channel. The reference runs a processor file "
        "written against its user API "
        "(`tests/interop/pvapy_processors/movingAverageProcessor.py`, pixels read with "
        "its `reshapeNtNdArray`); ours runs the same computation on pvhpc's "
        "`AdImageProcessor` (`benchmarks/moving_average.py`, pixels read with "
        "`get_image`). Source: our simulator, evenly paced, uint8 frames. CPU per frame "
        "is marginal as in 1 (µs, median (lowest–highest) over the repeats); the "
        "lossless rate is searched as in 2.\n"
    )
    w("| frame | rate | ours µs | reference µs | ours/reference | lossless fps ours | reference |")
    w("|---|---|---|---|---|---|---|")
    sizes = sorted(set(work.get("cpu", {})) | set(work.get("lossless", {})), key=int)
    for size in sizes:
        block = work.get("cpu", {}).get(size)
        runs = block["runs"] if block else {}
        reps = work.get("lossless", {}).get(size)
        row = lossless_row(reps) if reps else {}
        w(
            f"| {size}×{size} | {block['rate'] if block else '—'} fps | {cell(runs, OURS)} | "
            f"{cell(runs, REF)} | **{ratio_cell(runs, OURS, REF)}** | "
            f"{row.get('oursText', '—')} | {row.get('refText', '—')} |"
        )
    w("")
    w(
        "Getting the pixels out costs no copy on our side: `get_image` returns a "
        "read-only numpy view of the array pvaccess hands the callback; the copies are "
        "the processor's own (`astype(int64)`, the float64 average) and the output "
        "object's.\n"
    )


def profile_section(w) -> None:
    w("## Where a consumer's time goes\n")
    w(
        "Profiled with an evenly paced 128×128 source at 3–5 kHz: "
        "`benchmarks/profile_consumer.py` (our consumer with cProfile switched on in "
        "its monitor thread and processing thread) for the shares, and "
        "`benchmarks/callback_cost.py` (section 7, above) for the absolute Python cost.\n"
    )
    w(
        "- Most of the CPU is the transport: the kernel copying from the socket and "
        "pvAccess deserializing the structure into the object the callback gets. That "
        "is the counting floor; at 1024×1024 the copy of the pixels dominates everything."
    )
    w(
        "- pvaccess runs monitor callbacks on its own C++ thread through the GIL-state "
        "API: left alone, every callback creates a Python thread state and deletes it "
        "on return (about 20 µs per frame at 128×128). pvhpc's receiver keeps the "
        "thread's state; so do both floors here (`--pin`), so that they are the limit "
        "a pvaccess client can reach, not a plain client's cost."
    )
    w(
        "- Our Python per frame is what section 7 measures: the consumer's callback "
        "(pinning check, id read, receiver and missed-id counting, the processing call "
        "and its counters, a timestamp read for the latency figures on about 200 frames "
        "per second) against the floors' callbacks. Nothing of it can wait for the "
        "report period: status, latency percentiles and rates are computed when a "
        "report is made. In the stream the distance to the floors in section 1 is "
        "larger than section 7's, and moves from run to run by more than the whole of "
        "it: earlier series (2026-12-05, steady state, source and consumer on cores of "
        "their own, three repeats) had our whole consumer with its callback replaced by "
        "the counting floor's at 27.9 µs per frame against the floor's 27.1, so the "
        "process's size and its server add nothing measurable; what remains is most "
        "likely the callback's Python running on cold caches after the thread slept, "
        "which a hot loop does not show (an explanation, not measured). Doing the id and missed-frame bookkeeping outside Python would take "
        "a transport that counts, which pvaccess does not offer."
    )
    w(
        "- With `-oc`, `PvaServer.update` copies the structure into the record (and "
        "shares the pixel buffer, so pvAccess allocates a fresh one for the next frame): "
        "the republishing floor pays it too; on top, our publisher's counting (0.1 µs)."
    )
    w(
        "- Memory allocation is glibc's default. Stages used to fix malloc's mmap "
        "threshold at 64 MiB (and its trim threshold at 256 MiB) so that frame-sized "
        "buffers were reused; measured again (2026-12-05, one consumer on its own core, "
        "evenly paced source, two repeats each), that cost more than it saved: the "
        "moving average at 1024×1024 / 30 fps 6.1 ms per frame against 4.3 ms with the "
        "defaults (the fixed mmap threshold alone made the difference; a 4 MiB one cost "
        "9.9 ms), the passthrough at 1024×1024 / 800 fps 197 µs against 185 µs and at 128×128 / "
        "3 kHz 38 µs against 34 µs. glibc's own threshold follows the sizes a process "
        "frees, which served all three (pvhpc 5cec957 and later; the machine table says "
        "which code measured each section)."
    )
    w(
        "- With a receiver queue (`-rqs`) each frame is also copied (structure only, "
        "about 8–16 µs: pvaccess reuses the callback's object for the next update, so a "
        "queued object must be a copy; checked by keeping the objects, which all showed "
        "the last id) and handed to the processing thread. The queue hands frames over "
        "in batches: the processing thread wakes when 64 are queued or the oldest has "
        "waited 5 ms (a frame after a pause of 5 ms or more at once), not once per "
        "frame. Measured alternately on this shared machine, 128×128 at 3 kHz, three "
        "repeats: ours -rqs 86, 86, 88 µs per frame against 142, 120, 136 with the "
        "previous per-frame hand-off (in the callback: 61, 67, 67); at 1024×1024 / "
        "800 fps 380, 409, 436 against 396, 421, 432 (in the callback 353, 379, 393). "
        "pvaccess's own queueing monitor (`floor_queue.py`) costs as much as ours -rqs "
        "(128×128: 85, 88, 111 µs): the copy and the second thread are the price of "
        "any queue on pvaccess, so ≤ 10 % over the callback path is not reached "
        "(section 1 has this run's figures, at both sizes)."
    )
    w("")


# Section 7's two paths: results key, what is compared, the floor of section 1 beside it.
CALLBACK_PATHS = (
    ("noOc", "without `-oc` vs frame-checking floor", FLOOR_IDS),
    ("oc", "with `-oc` vs republishing floor", FLOOR_PUB),
)


def callback_rows(callback: dict, cpu: dict) -> list:
    """``(size, label, result, floor's marginal µs in the stream or None)`` for every
    path section 7 measured; the stream figure from section 1, our simulator evenly
    paced."""
    even = (cpu.get("sources") or {}).get(EVEN, {})
    rows = []
    for size, paths in callback.items():
        runs = (even.get(size) or {}).get("runs", {})
        for key, label, floor in CALLBACK_PATHS:
            if key in paths:
                rows.append((size, label, paths[key], marginal(runs, floor)))
    return rows


def callback_section(w, callback: dict, cpu: dict) -> None:
    """Section 7: ``callback_cost.py``'s figures, with the share of the floors' per-frame
    CPU in the stream where section 1 measured it."""
    w("## 7. Our callback's own cost, without the transport\n")
    w(
        "`benchmarks/callback_cost.py`: the same NTNDArray, its `uniqueId` one higher "
        "each call, handed in one process to the floors' callbacks (imported from "
        "`floor.py` and `floor_republish.py`) and to a real, started consumer's monitor "
        "callback, alternating, on the consumer's core; thread CPU time per call less a "
        "loop that only sets the id; median of the repeats and, for the difference, its "
        "lowest and highest. No transport and no sleeping thread between calls: this is "
        "the part of a consumer that is ours, free of the noise section 1 has. Every "
        "call was counted as processed with no id missed (the script fails otherwise).\n"
    )
    w(
        "| frame | path | floor's callback, µs | ours, µs | ours − floor, µs "
        "[spread] | that, per frame of the floor in the stream (section 1) |"
    )
    w("|---|---|---|---|---|---|")
    for size, label, r, stream in callback_rows(callback, cpu):
        share = f"{r['addedUs'] / stream:.1%} of {stream:.0f} µs" if stream else "—"
        lo, hi = r["addedSpread"]
        w(
            f"| {size}×{size} | {label} | {r['floorUs']:.2f} | {r['oursUs']:.2f} | "
            f"{r['addedUs']:.2f} [{lo:.2f}–{hi:.2f}] | {share} |"
        )
    w("")
