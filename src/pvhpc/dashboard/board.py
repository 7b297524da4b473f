"""What the dashboard page shows, as data: snapshots of the stages and their history.

A snapshot is one JSON-ready dict: a row per stage (the numbers of the terminal
table, :class:`~pvhpc.workflow.view.StageRow`), the live loss check of each
consumer set, the frame channels a thumbnail can be taken of, and, at the end of
a run, the summary's lines. :class:`Board` keeps the latest snapshot and, per
stage, the history the charts draw (rate, queue, latency), and tells its
listeners of each new snapshot.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from ..workflow.accounting import SetCheck
from ..workflow.view import StageRow

__all__ = ["Board", "row_entry", "set_entry", "HISTORY_POINTS", "SERIES"]

#: Points kept per stage and series; past that, every other point is dropped, so
#: the charts always cover the whole run, at a coarser step as it grows.
HISTORY_POINTS = 2000
#: The series of the charts, per stage.
SERIES = ("rate", "queued", "p50", "p99")


def _queued(row: StageRow) -> int | None:
    head = row.queue.split("/", 1)[0]
    return int(head) if head.isdigit() else None


def row_entry(row: StageRow, key: str, control: str | None, status: str | None) -> dict:
    """One stage row of a snapshot; ``key`` names the stage (and id) in the page.
    Latencies are in milliseconds, and none before a frame was processed."""
    timed = bool(row.processed)
    return {
        "key": key,
        "stage": row.label,
        "id": row.stage_id,
        "state": row.state,
        "received": row.received,
        "processed": row.processed,
        "missed": row.missed,
        "rejected": row.rejected,
        "errors": row.errors,
        "overruns": row.overruns,
        "rate": None if row.rate is None else round(float(row.rate), 3),
        "queue": row.queue,
        "queued": _queued(row),
        "queueFill": round(row.queue_fill, 4),
        "p50": None if row.latency_p50 is None or not timed else round(row.latency_p50 * 1e3, 3),
        "p99": None if row.latency_p99 is None or not timed else round(row.latency_p99 * 1e3, 3),
        "published": row.published,
        "status": status,
        "control": control,
    }


def set_entry(check: SetCheck, final: bool) -> dict:
    """The loss check of one consumer set, live or (``final``) at the end of a run.

    ``verdict``: ``ok`` (every frame published was processed), ``loss`` (some were
    counted as lost: missed, rejected, errors), ``-`` (frames published there
    unknown). While running, counts that do not match yet are ``in flight``
    (frames on their way, or a source whose count is read less often than the
    stages'); at the end they are ``LOST`` (frames vanished unaccounted) or
    ``extra`` (more accounted for than published: the counts cannot be trusted).
    """
    lost = check.missed + check.rejected + check.errors + check.lost_with_dead
    if check.published is None or not check.reported:
        verdict = "-"
    elif lost and not final:
        verdict = "loss"
    elif check.extra or check.unaccounted:
        verdict = ("extra" if check.extra else "LOST") if final else "in flight"
    else:
        verdict = "loss" if lost else "ok"
    return {
        "label": check.cset.label,
        "channels": list(check.cset.channels),
        "published": check.published,
        "processed": check.processed,
        "missed": check.missed,
        "rejected": check.rejected,
        "errors": check.errors,
        "skipped": check.skipped,
        "lostWithDead": check.lost_with_dead,
        "accounted": check.accounted,
        "unaccounted": check.unaccounted,
        "verdict": verdict,
    }


class Board:
    """The latest snapshot and the charts' history; thread-safe.

    :meth:`publish` is called by whoever reads the stages (the workflow runner's
    main thread, or the dashboard's sampling loop), :meth:`snapshot` and
    :meth:`history` by the web server's thread. Listeners are called in the
    publishing thread with the new snapshot and must not block.
    """

    def __init__(self, title: str):
        self.title = title
        self.started = time.time()
        self._lock = threading.Lock()
        self._snapshot: dict[str, Any] = {"title": title, "stages": [], "sets": [], "t": 0}
        self._history: dict[str, dict[str, list]] = {}
        self._step: dict[str, int] = {}
        self._seen: dict[str, int] = {}
        self._listeners: list[Callable[[dict], None]] = []

    def listen(self, callback: Callable[[dict], None]) -> None:
        with self._lock:
            self._listeners.append(callback)

    def publish(self, snapshot: dict) -> dict:
        """Store a new snapshot (its stages' numbers are added to the history) and
        tell the listeners. Returns the snapshot, stamped with ``t`` and ``title``."""
        now = time.time()
        snapshot = dict(snapshot, t=round(now, 3), title=self.title, elapsed=now - self.started)
        with self._lock:
            for row in snapshot.get("stages", ()):
                self._add_point(row, now)
            self._snapshot = snapshot
            listeners = list(self._listeners)
        for callback in listeners:
            callback(snapshot)
        return snapshot

    def _add_point(self, row: dict, now: float) -> None:
        key = row["key"]
        series = self._history.setdefault(key, {"t": [], **{s: [] for s in SERIES}})
        n = self._seen.get(key, 0)
        self._seen[key] = n + 1
        step = self._step.setdefault(key, 1)
        if n % step:
            return
        series["t"].append(round(now, 3))
        for name in SERIES:
            series[name].append(row.get(name))
        if len(series["t"]) > HISTORY_POINTS:
            for values in series.values():
                del values[::2]
            self._step[key] = step * 2

    def snapshot(self) -> dict:
        with self._lock:
            return self._snapshot

    def history(self) -> dict[str, dict[str, list]]:
        """Per stage key: ``t`` (seconds since the epoch) and each series' values."""
        with self._lock:
            return {k: {n: list(v) for n, v in s.items()} for k, s in self._history.items()}
