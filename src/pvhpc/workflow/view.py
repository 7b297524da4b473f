"""The live status view: one row per stage, read from the stages' status channels.

Used by ``pvhpc status`` (any status channels, found by name pattern) and ``pvhpc
run`` (every stage of a workflow). :class:`StatusWatcher` monitors status channels
and keeps the latest snapshot of each; :func:`row_from_status` turns a snapshot
into a :class:`StageRow`; :func:`status_table` renders rows as a ``rich`` table in
which loss (missed, rejected, errors, overruns) stands out.

A snapshot is the status structure of SPEC §4 as a plain dict (``consumerId`` or
``collectorId``, ``objectTime``, ``receiverStats``, ``processorStats``, …).
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pvaccess as pva
from rich import box
from rich.table import Table
from rich.text import Text

__all__ = ["StageRow", "StatusWatcher", "row_from_status", "status_table", "expand_pattern"]


@dataclass
class StageRow:
    """What one line of the view shows. ``None`` counts are shown as ``-``."""

    label: str
    stage_id: str = "-"
    state: str = ""
    received: int | None = None
    processed: int | None = None
    missed: int | None = None
    rejected: int | None = None
    errors: int | None = None
    overruns: int | None = None
    rate: float | None = None
    queue: str = "-"
    queue_fill: float = 0.0
    latency_p50: float | None = None
    latency_p99: float | None = None
    published: int | None = None

    @property
    def loss(self) -> int:
        """Objects lost or failed so far (missed + rejected + errors + overruns)."""
        return sum(v or 0 for v in (self.missed, self.rejected, self.errors, self.overruns))


def expand_pattern(pattern: str, max_id: int, id_format: str | None = None) -> list[str]:
    """Channel names for a pattern: ``*`` is replaced by each id 1..``max_id``."""
    if "*" not in pattern:
        return [pattern]
    out = []
    for i in range(1, max_id + 1):
        text = format(i, id_format) if id_format else str(i)
        out.append(pattern.replace("*", text))
    return out


def _get(d: Any, *path: str, default: Any = 0) -> Any:
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return default
        d = d[key]
    return d


def row_from_status(
    label: str,
    status: dict,
    rate: float | None = None,
    connected: bool = True,
) -> StageRow:
    """A row from one status snapshot.

    ``rate`` is the recent processing rate if the caller measured one (else the
    average ``processedRate`` of the status is shown); ``connected`` is whether the
    status channel is still up.
    """
    stage_id = status.get("consumerId", status.get("collectorId", "-"))
    recv = status.get("receiverStats") or {}
    proc = status.get("processorStats") or {}
    queue = status.get("queueStats") or {}
    max_length = int(queue.get("maxLength", -1) or 0) if "maxLength" in queue else -1
    queued = int(queue.get("nQueued", 0) or 0)
    if max_length < 0:
        queue_text, fill = "-", 0.0
    elif max_length == 0:
        queue_text, fill = f"{queued}/∞", 0.0
    else:
        queue_text, fill = f"{queued}/{max_length}", queued / max_length
    row = StageRow(
        label=label,
        stage_id=str(stage_id),
        received=int(recv.get("nReceived", 0)),
        processed=int(proc.get("nProcessed", 0)),
        missed=int(proc.get("nMissed", 0)),
        rejected=int(recv.get("nRejected", 0)),
        errors=int(proc.get("nErrors", 0)) + int(recv.get("nErrors", 0)),
        overruns=int(recv.get("nOverruns", 0)),
        rate=rate if rate is not None else float(proc.get("processedRate", 0.0)),
        queue=queue_text,
        queue_fill=fill,
        latency_p50=float(proc.get("latencyP50", 0.0)) if "latencyP50" in proc else None,
        latency_p99=float(proc.get("latencyP99", 0.0)) if "latencyP99" in proc else None,
        published=int(_get(status, "publisherStats", "nPublished")),
    )
    producers = status.get("producerStats") or {}
    if producers:
        up = all(bool(p.get("connected", True)) for p in producers.values() if isinstance(p, dict))
    else:
        up = bool(recv.get("connected", True))
    if not connected:
        row.state = "gone"
    elif not up and row.received == 0:
        row.state = "waiting"
    elif not up:
        row.state = "no input"
    elif row.loss:
        row.state = "LOSS"
    else:
        row.state = "ok"
    return row


class StatusWatcher:
    """Monitor status channels and keep the latest snapshot of each.

    Channels may appear at any time: a monitor is set up on each name at once and
    connects whenever the channel comes up. Monitor callbacks run in pvaccess
    threads and only store the snapshot; every other method may be called from any
    thread and never blocks on the network.
    """

    def __init__(self, channels: Iterable[str] = ()):
        self._lock = threading.Lock()
        self._channels: dict[str, pva.Channel] = {}
        self._latest: dict[str, dict] = {}
        self._samples: dict[str, collections.deque] = {}
        self._first_answer: float | None = None
        self._last_new: float | None = None
        for name in channels:
            self.add(name)

    def add(self, name: str) -> None:
        """Start monitoring ``name`` (no-op if already watched)."""
        if name in self._channels:
            return
        channel = pva.Channel(name)
        self._channels[name] = channel
        self._samples[name] = collections.deque(maxlen=8)
        channel.monitor(lambda pv, name=name: self._on_update(name, pv), "field()")

    def _on_update(self, name: str, pv: Any) -> None:
        try:
            value = pv.get()
        except Exception:  # noqa: BLE001 - an unreadable update: keep the previous one
            return
        now = time.monotonic()
        with self._lock:
            if name not in self._latest:
                self._last_new = now
                if self._first_answer is None:
                    self._first_answer = now
            self._latest[name] = value
            self._samples[name].append(
                (
                    float(value.get("objectTime", 0.0) or 0.0),
                    _get(value, "processorStats", "nProcessed"),
                )
            )

    @property
    def channels(self) -> list[str]:
        return list(self._channels)

    def answered(self) -> list[str]:
        """Channels that delivered at least one status, in the order they were added."""
        with self._lock:
            return [n for n in self._channels if n in self._latest]

    def last_new_answer(self) -> float | None:
        """``time.monotonic()`` of the latest first answer of a channel, or None."""
        with self._lock:
            return self._last_new

    def latest(self, name: str) -> dict | None:
        with self._lock:
            return self._latest.get(name)

    def connected(self, name: str) -> bool:
        channel = self._channels.get(name)
        try:
            return bool(channel is not None and channel.isConnected())
        except pva.PvaException:
            return False

    def rate(self, name: str) -> float | None:
        """Processed objects per second between the last two status updates, or None."""
        with self._lock:
            samples = list(self._samples.get(name, ()))
        if len(samples) < 2:
            return None
        (t0, n0), (t1, n1) = samples[-2], samples[-1]
        if t1 <= t0 or n1 < n0:
            return None
        if t1 - t0 < 0.2:
            # Updates that close together (a get_stats) say little: widen the window.
            for t, n in reversed(samples[:-1]):
                if t1 - t >= 0.2 and n <= n1:
                    return (n1 - n) / (t1 - t)
            return None
        return (n1 - n0) / (t1 - t0)

    def row(self, name: str, label: str | None = None) -> StageRow | None:
        """The row for one channel, or None before its first status."""
        status = self.latest(name)
        if status is None:
            return None
        return row_from_status(label or name, status, self.rate(name), self.connected(name))

    def close(self) -> None:
        """Stop every monitor."""
        for channel in self._channels.values():
            try:
                channel.stopMonitor()
            except pva.PvaException:
                pass


def _count(value: int | None, loss: bool = False) -> Text:
    if value is None:
        return Text("-", style="dim")
    text = Text(str(value))
    if loss and value:
        text.stylize("bold red")
    return text


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1e3:.1f}"


_STATE_STYLES = {
    "ok": "green",
    "LOSS": "bold red",
    "gone": "dim",
    "done": "green",
    "failed": "bold red",
    "waiting": "yellow",
    "no input": "yellow",
    "starting": "yellow",
}


def status_table(rows: Iterable[StageRow], title: str | None = None, caption: str | None = None):
    """A ``rich`` table of rows; loss counts in red, a nearly full queue in yellow."""
    table = Table(
        title=title,
        caption=caption,
        box=box.SIMPLE_HEAD,
        title_justify="left",
        caption_justify="left",
        pad_edge=False,
    )
    table.add_column("stage", no_wrap=True)
    table.add_column("id", justify="right")
    table.add_column("state", no_wrap=True)
    for name in ("received", "processed", "missed", "rejected", "errors", "overruns"):
        table.add_column(name, justify="right")
    table.add_column("rate/s", justify="right")
    table.add_column("queue", justify="right")
    table.add_column("p50 ms", justify="right")
    table.add_column("p99 ms", justify="right")
    table.add_column("published", justify="right")
    for row in rows:
        queue = Text(row.queue)
        if row.queue_fill >= 0.8:
            queue.stylize("bold yellow")
        table.add_row(
            row.label,
            row.stage_id,
            Text(row.state, style=_STATE_STYLES.get(row.state, "")),
            _count(row.received),
            _count(row.processed),
            _count(row.missed, loss=True),
            _count(row.rejected, loss=True),
            _count(row.errors, loss=True),
            _count(row.overruns, loss=True),
            "-" if row.rate is None else f"{row.rate:.1f}",
            queue,
            _ms(row.latency_p50),
            _ms(row.latency_p99),
            _count(row.published),
        )
    return table
