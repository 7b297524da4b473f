"""The mirror's reports: a table for people and one JSON object for programs."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict

from .mirror import ChannelCounts

__all__ = ["format_report", "report_json"]


def format_report(
    counts: Sequence[ChannelCounts],
    previous: Sequence[ChannelCounts] | None,
    elapsed: float,
    title: str,
) -> str:
    """An aligned table, one row per mirrored channel, headed by ``title``.

    Rates are the change since ``previous`` (same channels, same order) divided by
    ``elapsed`` seconds; without ``previous`` they are totals over ``elapsed``.
    """
    prev = list(previous) if previous is not None else [None] * len(counts)

    def rate(now: int, before: int) -> str:
        return f"{(now - before) / elapsed:.1f}" if elapsed > 0 else "-"

    header = ["channel", "source", "state"]
    header += ["received", "rate/s", "published", "rate/s", "skipped", "overruns", "rate/s"]
    header += ["errors", "reconnects"]
    rows = [header]
    for c, p in zip(counts, prev):
        state = (
            "waiting"
            if c.connected == 0
            else ("connected" if c.n_monitors == 1 else f"{c.connected}/{c.n_monitors} connected")
        )
        rows.append(
            [
                c.dst,
                f"{c.provider}://{c.src}",
                state,
                str(c.received),
                rate(c.received, p.received if p else 0),
                str(c.published),
                rate(c.published, p.published if p else 0),
                str(c.skipped),
                str(c.overruns),
                rate(c.overruns, p.overruns if p else 0),
                str(c.errors),
                str(c.reconnects),
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [title]
    for r in rows:
        cells = [r[i].ljust(widths[i]) if i < 3 else r[i].rjust(widths[i]) for i in range(len(r))]
        lines.append("  " + "  ".join(cells).rstrip())
    return "\n".join(lines)


def report_json(
    counts: Sequence[ChannelCounts],
    previous: Sequence[ChannelCounts] | None,
    elapsed: float,
    final: bool,
) -> str:
    """The same report as one JSON object (``--report-format json``): every counter of
    every channel, and the rates as :func:`format_report` computes them."""
    prev = list(previous) if previous is not None else [None] * len(counts)
    channels = []
    for c, p in zip(counts, prev):
        entry = asdict(c)
        for key in ("received", "published", "overruns"):
            before = getattr(p, key) if p else 0
            entry[f"{key}Rate"] = (getattr(c, key) - before) / elapsed if elapsed > 0 else 0.0
        channels.append(entry)
    return json.dumps({"kind": "mirror", "final": final, "elapsed": elapsed, "channels": channels})
