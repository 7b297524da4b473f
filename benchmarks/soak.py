"""Soak test: a long steady stream through simulator -> 2 consumers -> collector.

    .venv/bin/python benchmarks/soak.py                # 10 minutes (make soak)
    .venv/bin/python benchmarks/soak.py --minutes 2 --fps 100 --out /tmp/soak.md

The simulator publishes 128x128 uint8 frames at a moderate rate; two consumers share
them through the distributor (``-nc 2 -du 1``, server and receiver queues) and
republish; a collector gathers both outputs and re-sorts them. Every minute the
script samples each process's resident memory and every stage's counts from its
status channel. At the end it checks:

* zero unaccounted frames: for the consumer set and for the collector,
  ``sent = processed + missed + rejected + errors`` (SPEC §5), from their final
  reports;
* memory flat after warm-up: no process grew by more than ``--max-growth`` MiB
  between the end of the warm-up (``--warmup`` minutes) and the end of the run.

It writes the per-minute table and the verdict to ``docs/soak.md`` (or ``--out``)
and exits 0 on pass, 1 on fail. All EPICS traffic stays on loopback (the values of
``../shared/epics-loopback.env`` are set for every process). Every wait is bounded.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import ROOT, Proc, get, log, wait_for  # noqa: E402, I001  (pins loopback first)

import psutil  # noqa: E402

from pvhpc.client import send_command  # noqa: E402
from pvhpc.workflow.accounting import accounted as loss_formula  # noqa: E402
from pvhpc.workflow.accounting import stage_counts  # noqa: E402
from pvhpc.workflow.process import final_reports as finals_by_id  # noqa: E402

MIB = 1024 * 1024


def workers(proc: Proc) -> list[psutil.Process]:
    """The stage processes of a supervising parent, or the process itself."""
    kids = sorted(proc.children(), key=lambda p: p.pid)
    return kids or [psutil.Process(proc.popen.pid)]


def rss_mib(p: psutil.Process) -> float:
    try:
        return p.memory_info().rss / MIB
    except psutil.Error:
        return float("nan")


def fresh_status(status_channel: str, control_channel: str, timeout: float = 3.0):
    """The stage's statistics as of now: ask for them (``get_stats``, answered once the
    stage has published them), then read them. None if the stage does not answer."""
    try:
        send_command(control_channel, "get_stats", "", timeout)
    except Exception:  # noqa: BLE001 - a stage that does not answer: its last status
        pass
    return get(status_channel, timeout)


def accounted(report: dict) -> int:
    return loss_formula(stage_counts(report))


def final_reports(proc: Proc, id_name: str) -> dict[int, dict]:
    return {k: r for k, r in finals_by_id(proc.reports(), id_name).items() if r.get("final")}


def sim_sent(proc: Proc) -> int:
    """The simulator's count, from its JSON report (it runs with ``-rf json``)."""
    reports = [r for r in proc.reports() if r.get("event") == "report"]
    return int(reports[-1]["nSent"]) if reports else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="stream length [10]")
    ap.add_argument("--fps", type=float, default=200.0, help="frame rate [200]")
    ap.add_argument("--size", type=int, default=128, help="frame size, pixels a side [128]")
    ap.add_argument("--warmup", type=float, default=2.0, help="warm-up minutes [2]")
    ap.add_argument(
        "--max-growth", type=float, default=10.0, help="MiB a process may grow after warm-up [10]"
    )
    ap.add_argument("--sample", type=float, default=60.0, help="seconds between samples [60]")
    ap.add_argument("--out", default=str(ROOT / "docs" / "soak.md"), help="report file")
    args = ap.parse_args(argv)

    p = "soak" + uuid.uuid4().hex[:6]
    image, seconds = f"{p}:image", args.minutes * 60
    common = ["-rp", "5", "-rf", "json"]
    consumers = Proc(
        "consumers",
        ["consumer", "-ic", image, "-nc", "2", "-du", "1", "-sqs", "100", "-rqs", "1000",
         "-oc", f"{p}:c:*:output", "-sc", f"{p}:c:*:status", "-cc", f"{p}:c:*:control", *common],
    )  # fmt: skip
    collector = Proc(
        "collector",
        ["collector", "-id", "1", "-pid", "1,2", "-ic", f"{p}:c:*:output", "-sqs", "1000",
         "-ccs", "100", "-rqs", "2000", "-oc", f"{p}:col:*:output", "-sc", f"{p}:col:*:status",
         "-cc", f"{p}:col:*:control", *common],
    )  # fmt: skip
    status = {1: f"{p}:c:1:status", 2: f"{p}:c:2:status", "col": f"{p}:col:1:status"}
    controls = {k: ch.replace(":status", ":control") for k, ch in status.items()}
    procs = [consumers, collector]
    sim = None
    rows: list[dict] = []
    verdict: dict = {}
    t_start = time.time()
    try:
        ok = wait_for(lambda: all(get(ch, 2) is not None for ch in status.values()), 60)
        if not ok:
            raise RuntimeError("the stages' status channels did not come up in 60 s")
        sim = Proc(
            "sim",
            ["sim", "-cn", image, "-nx", str(args.size), "-ny", str(args.size), "-dt", "uint8",
             "-fps", f"{args.fps:g}", "-rt", f"{seconds:g}", "-std", "4", "-shd", "120",
             "-nf", "100", "-rf", "json"],
        )  # fmt: skip
        procs.append(sim)
        connected = wait_for(
            lambda: all(
                (get(status[i]) or {"receiverStats": {"nReceived": 0}})["receiverStats"][
                    "nReceived"
                ]
                >= 1
                for i in (1, 2)
            ),
            60,
        )
        if not connected:
            raise RuntimeError("the consumers did not connect to the simulator in 60 s")
        log(f"streaming {args.fps:g} fps for {args.minutes:g} min on {image}")
        t0 = time.monotonic()
        end = t0 + seconds + 4
        next_sample = t0
        while True:
            now = time.monotonic()
            if now >= next_sample:
                rows.append(sample(now - t0, image, consumers, collector, status, controls, sim))
                log(_row_text(rows[-1]))
                next_sample += args.sample
            if now >= end or not sim.alive():
                break
            for proc in procs:
                if not proc.alive():
                    raise RuntimeError(f"{proc.name} exited early:\n{proc.text()[-3000:]}")
            time.sleep(min(1.0, max(0.0, min(end, next_sample) - time.monotonic())))
        final = wait_for(
            lambda: [r for r in sim.reports() if r.get("event") == "report" and r["final"]], 60
        )
        if not final:
            raise RuntimeError("the simulator never reported its final count")
        sent = int(final[-1]["nSent"])
        log(f"simulator sent {sent} frames; waiting for the stages to account for them")

        def settled(last={"v": None, "t": time.monotonic()}):  # noqa: B006 - poll state
            c = sum(accounted(get(status[i]) or _zero()) for i in (1, 2))
            col = accounted(get(status["col"]) or _zero())
            if c >= sent and col >= sent:
                return True
            if (c, col) != last["v"]:
                last["v"], last["t"] = (c, col), time.monotonic()
            return time.monotonic() - last["t"] > 10

        wait_for(settled, 120, 0.5)
        rows.append(
            sample(time.monotonic() - t0, image, consumers, collector, status, controls, sim, True)
        )
        log(_row_text(rows[-1]))
        codes = {"collector": collector.stop(), "consumers": consumers.stop()}
        codes["sim"] = sim.stop()
        creps = final_reports(consumers, "consumerId")
        colrep = final_reports(collector, "collectorId").get(1)
        verdict = judge(args, sent, creps, colrep, rows, codes)
    except Exception as exc:  # noqa: BLE001 - report whatever went wrong, then fail
        verdict = {"pass": False, "error": f"{type(exc).__name__}: {exc}"}
        log(verdict["error"])
    finally:
        for proc in reversed(procs):
            proc.stop()
    write_report(args, rows, verdict, t_start)
    log(f"{'PASS' if verdict.get('pass') else 'FAIL'}; report in {args.out}")
    return 0 if verdict.get("pass") else 1


def _zero() -> dict:
    return {
        "receiverStats": {"nRejected": 0, "nErrors": 0},
        "processorStats": {"nProcessed": 0, "nMissed": 0, "nErrors": 0},
    }


def sample(t, image, consumers, collector, status, controls, sim, final=False):
    """One row: frames sent so far (the source's current id), every stage's counts
    as of now, every process's resident memory."""
    row = {"t": t, "final": final}
    for key, ch in status.items():
        st = fresh_status(ch, controls[key])
        row[f"acc_{key}"] = accounted(st) if st is not None else -1
        row[f"proc_{key}"] = st["processorStats"]["nProcessed"] if st is not None else -1
    # After the counts, so that "in flight" is never negative.
    src = get(image)
    # The simulator's own log is a report period behind: only good for the last row.
    row["sent"] = src["uniqueId"] if src is not None else sim_sent(sim)
    row["sent_live"] = src is not None
    if src is None and not final:
        log(f"could not read {image}; 'sent' in this row is the simulator's last report")
    kids = workers(consumers)
    row["rss"] = {
        "sim": rss_mib(psutil.Process(sim.popen.pid)),
        "consumers (parent)": rss_mib(psutil.Process(consumers.popen.pid)),
        **{
            f"consumer {i}": rss_mib(w)
            for i, w in enumerate(kids, 1)
            if w.pid != consumers.popen.pid
        },
        "collector": rss_mib(psutil.Process(collector.popen.pid)),
    }
    return row


def _row_text(row: dict) -> str:
    mem = ", ".join(f"{k} {v:.1f}" for k, v in row["rss"].items())
    return (
        f"t={row['t']:.0f}s sent {row['sent']} consumers {row['proc_1']}+{row['proc_2']} "
        f"collector {row['proc_col']} | RSS MiB: {mem}"
    )


def judge(args, sent: int, creps: dict, colrep: dict | None, rows: list, codes: dict) -> dict:
    v: dict = {"sent": sent, "exit": codes}
    if sorted(creps) != [1, 2] or colrep is None:
        v.update({"pass": False, "error": f"missing final reports (consumers {sorted(creps)})"})
        return v
    c_acc = sum(accounted(r) for r in creps.values())
    v["consumers"] = {
        "accounted": c_acc,
        "unaccounted": sent - c_acc,
        **{
            k: sum(_field(r, k) for r in creps.values())
            for k in ("nProcessed", "nMissed", "nRejected", "nErrors", "nOverruns")
        },
    }
    v["collector"] = {
        "accounted": accounted(colrep),
        "unaccounted": sent - accounted(colrep),
        **{k: _field(colrep, k) for k in ("nProcessed", "nMissed", "nRejected", "nErrors")},
    }
    warm = [r for r in rows if r["t"] >= args.warmup * 60 - 1]
    growth = {}
    if len(warm) >= 2:
        for name in warm[0]["rss"]:
            first, last = warm[0]["rss"].get(name), warm[-1]["rss"].get(name)
            if first is not None and last is not None:
                growth[name] = last - first
    v["growth"] = growth
    half = [r for r in rows if r["t"] >= rows[-1]["t"] / 2] if rows else []
    v["growth_second_half"] = (
        {n: half[-1]["rss"][n] - half[0]["rss"][n] for n in half[0]["rss"] if n in half[-1]["rss"]}
        if len(half) >= 2
        else {}
    )
    v["memory_flat"] = bool(growth) and all(g <= args.max_growth for g in growth.values())
    v["pass"] = (
        v["consumers"]["unaccounted"] == 0
        and v["collector"]["unaccounted"] == 0
        and v["memory_flat"]
        and all(code == 0 for code in codes.values())
    )
    return v


def _field(report: dict, key: str) -> int:
    if key == "nOverruns":
        return report["receiverStats"]["nOverruns"]
    if key == "nRejected":
        return report["receiverStats"]["nRejected"]
    if key == "nErrors":
        return report["receiverStats"]["nErrors"] + report["processorStats"]["nErrors"]
    return report["processorStats"][key]


def write_report(args, rows: list, v: dict, t_start: float) -> None:
    lines = [
        "# Soak test",
        "",
        "A long steady stream through the whole chain: simulator → 2 consumers sharing "
        "the frames through the distributor → collector re-sorting them. Run it with "
        "`make soak` (10 minutes) or `.venv/bin/python benchmarks/soak.py --minutes N`.",
        "",
        "Pass means: **zero unaccounted frames** (for the consumer set and for the "
        "collector, frames sent = processed + missed + rejected + errors, from the final "
        "reports) and **memory flat after warm-up** (no process grew by more than "
        f"{args.max_growth:g} MiB between minute {args.warmup:g} and the end), and every "
        "process exits with status 0.",
        "",
        "## Setup",
        "",
        f"- run: {time.strftime('%Y-%m-%d %H:%M', time.localtime(t_start))}, "
        f"{args.minutes:g} minutes, {args.fps:g} fps, {args.size}x{args.size} uint8 "
        f"(100 distinct frames)",
        f"- machine: {os.cpu_count()} cores, {platform.machine()}, Linux {platform.release()}, "
        f"Python {platform.python_version()}; load average {os.getloadavg()[2]:.1f} (15 min) "
        "at the end",
        "- sim: `pvhpc sim -fps F -rt T -std 4 -shd 120 -nf 100`",
        "- consumers: `pvhpc consumer -nc 2 -du 1 -sqs 100 -rqs 1000 -oc -sc -cc`",
        "- collector: `pvhpc collector -pid 1,2 -sqs 1000 -ccs 100 -rqs 2000`",
        "",
        "## Samples",
        "",
        "At each sample every stage is asked for its statistics (`get_stats` on its control "
        "channel) and *sent* is the id the simulator's channel holds right after; *in flight* "
        "is frames sent minus frames the consumers had accounted for (— where the channel "
        "could not be read and *sent* is the simulator's last log line). Memory is resident "
        "set size in MiB.",
        "",
    ]
    if rows:
        names = list(rows[0]["rss"])
        head = ["min", "sent", "consumer 1", "consumer 2", "collector", "in flight"] + [
            f"RSS {n}" for n in names
        ]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        for r in rows:
            live = r.get("sent_live", True) or r["final"]
            flight = str(r["sent"] - r["acc_1"] - r["acc_2"]) if live else "—"
            cells = [
                ("end" if r["final"] else f"{round(r['t'] / 60, 1):g}"),
                str(r["sent"]),
                str(r["proc_1"]),
                str(r["proc_2"]),
                str(r["proc_col"]),
                flight,
            ] + [f"{r['rss'].get(n, float('nan')):.1f}" for n in names]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## Result", ""]
    if "error" in v:
        lines.append(f"**FAIL**: {v['error']}")
    else:
        c, col = v["consumers"], v["collector"]
        lines += [
            f"**{'PASS' if v['pass'] else 'FAIL'}**",
            "",
            "| | frames sent | processed | missed | rejected | errors | overruns | unaccounted |",
            "|---|---|---|---|---|---|---|---|",
            f"| consumers (sum) | {v['sent']} | {c['nProcessed']} | {c['nMissed']} | "
            f"{c['nRejected']} | {c['nErrors']} | {c['nOverruns']} | {c['unaccounted']} |",
            f"| collector | {v['sent']} | {col['nProcessed']} | {col['nMissed']} | "
            f"{col['nRejected']} | {col['nErrors']} | — | {col['unaccounted']} |",
            "",
            "Memory growth after warm-up (MiB): "
            + ", ".join(f"{k} {g:+.1f}" for k, g in v["growth"].items())
            + f" — {'flat' if v['memory_flat'] else 'NOT flat'}. Over the second half of the "
            "run: " + ", ".join(f"{k} {g:+.1f}" for k, g in v["growth_second_half"].items()) + ".",
            "",
            "Exit statuses: " + ", ".join(f"{k} {c}" for k, c in v["exit"].items()) + ".",
        ]
    lines.append("")
    Path(args.out).write_text("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
