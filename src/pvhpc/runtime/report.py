"""Human-readable and JSON statistics reports printed by consumers and collectors.

One report is a table with a row per stage (one row for a single consumer, one
per child and a total for ``-nc > 1``), followed by metadata and user statistics.
``json`` prints one JSON object a line, for machines.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable
from typing import IO

__all__ = ["format_report", "print_report", "totals"]

_COLUMNS = [
    # header, width, getter
    ("received", 10, lambda s: s["receiverStats"]["nReceived"]),
    ("processed", 10, lambda s: s["processorStats"]["nProcessed"]),
    ("missed", 8, lambda s: s["processorStats"]["nMissed"]),
    ("rejected", 9, lambda s: s["receiverStats"]["nRejected"]),
    ("errors", 7, lambda s: s["processorStats"]["nErrors"] + s["receiverStats"]["nErrors"]),
    ("overruns", 9, lambda s: s["receiverStats"]["nOverruns"]),
    ("rate/s", 9, lambda s: s["processorStats"]["processedRate"]),
    ("queued", 7, lambda s: s["queueStats"]["nQueued"]),
    ("published", 10, lambda s: s["publisherStats"]["nPublished"]),
    (
        "lat p50/p99 ms",
        15,
        lambda s: (
            s["processorStats"].get("latencyP50", 0.0),
            s["processorStats"].get("latencyP99", 0.0),
        ),
    ),
]

_SUMMED = (
    "received",
    "processed",
    "missed",
    "rejected",
    "errors",
    "overruns",
    "rate/s",
    "queued",
    "published",
)


def _cell(value) -> str:
    if isinstance(value, tuple):
        return f"{value[0] * 1e3:.1f}/{value[1] * 1e3:.1f}"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def totals(snapshots: Iterable[dict]) -> dict:
    """Sum the table columns over several stages' snapshots."""
    out = {name: 0 for name in _SUMMED}
    for snap in snapshots:
        for name, _, get in _COLUMNS:
            if name in out:
                out[name] += get(snap)
    return out


def format_report(
    snapshots: list[dict],
    kind: str = "consumer",
    final: bool = False,
    sections: Iterable[str] = ("all",),
) -> str:
    """Format one report block for one or more stages' snapshots."""
    sections = set(sections)

    def show(name):
        return "all" in sections or name in sections

    id_name = f"{kind}Id"
    runtime = max((s["processorStats"]["runtime"] for s in snapshots), default=0.0)
    title = "final report" if final else "report"
    lines = [f"{kind} {title} at {time.strftime('%H:%M:%S')}, runtime {runtime:.1f} s"]
    header = f"  {'id':>5} " + "".join(f" {name:>{w}}" for name, w, _ in _COLUMNS)
    lines.append(header)
    for snap in snapshots:
        row = f"  {snap.get(id_name, '?')!s:>5} "
        row += "".join(f" {_cell(get(snap)):>{w}}" for _, w, get in _COLUMNS)
        lines.append(row)
    if len(snapshots) > 1:
        total = totals(snapshots)
        row = f"  {'all':>5} " + "".join(
            f" {_cell(total[name]) if name in total else '':>{w}}" for name, w, _ in _COLUMNS
        )
        lines.append(row)
    for snap in snapshots:
        prefix = f"  [{kind} {snap.get(id_name, '?')}] " if len(snapshots) > 1 else "  "
        extra = snap.get("collectorStats")
        if extra and show("collector"):
            lines.append(prefix + "collector: " + _pairs(extra))
        meta = snap.get("metadataStats") or {}
        if meta and show("metadata"):
            lines.append(
                prefix
                + "metadata: "
                + "; ".join(
                    f"{name} received {m['nReceived']} queued {m['nQueued']} "
                    f"rejected {m['nRejected']} overruns {m['nOverruns']}"
                    for name, m in meta.items()
                )
            )
        user = snap.get("userStats") or {}
        if user and show("user"):
            lines.append(prefix + "user: " + _pairs(user))
        if snap.get("receiverStats", {}).get("nRestarts") and show("receiver"):
            lines.append(
                prefix + f"source restarted {snap['receiverStats']['nRestarts']} "
                "time(s); counting resumed from the new ids"
            )
    return "\n".join(lines)


def _pairs(d: dict) -> str:
    return "  ".join(
        f"{k}={_cell(v) if not isinstance(v, float) else f'{v:.4g}'}"
        for k, v in d.items()
        if not isinstance(v, dict)
    )


def print_report(
    snapshots: list[dict],
    kind: str,
    fmt: str = "text",
    final: bool = False,
    sections: Iterable[str] = ("all",),
    stream: IO[str] | None = None,
) -> None:
    """Print a report on stdout (``fmt`` is ``text`` or ``json``)."""
    stream = stream or sys.stdout
    if fmt == "json":
        for snap in snapshots:
            stream.write(json.dumps(dict(snap, kind=kind, final=final), default=str) + "\n")
    else:
        stream.write(format_report(snapshots, kind, final, sections) + "\n")
    stream.flush()
