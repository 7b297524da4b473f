"""The mirror server: serve channels with the latest object of other channels.

A :class:`MirrorServer` hosts one ``pvaccess.PvaServer`` record per mapping of the
channel map (:mod:`pvhpc.channel_map`). Each record, ``dst``, is updated with every
object its source channel ``src`` delivers, through one or more monitors on ``src``
(PVA or CA). Because ``dst`` is an ordinary PvaServer record, clients of the mirror
get server queues (``record[queueSize=N]``) and the distributor plugin
(``field(_[pydistributor=updates:N])``) even when the source offers neither.

Why a Python PvaServer and not ``pvaccess.PvaMirrorServer``: the C++ mirror's
``dst`` vanishes when the source goes away and never serves a restarted source
again (measurements in ``docs/mirror.md``). ``dst`` appears with the first object
from ``src`` and stays up, with its last object, while the source is away. An
absent source is probed with a fresh channel, first every ``probe_interval``
seconds and then less often, up to every 2 s (pvAccess's own search backs off).

Threads: monitor callbacks run on pvaccess threads and only update ``dst`` and the
monitor's own counters. One supervisor thread (started by :meth:`MirrorServer.start`)
polls each source monitor's connection, drops monitors whose source disconnected
and subscribes again. :meth:`MirrorServer.counts` may be called from any thread.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import pvaccess as pva

from .channel_map import ChannelMapping
from .log import get_logger
from .loopback import search_settings

__all__ = ["MirrorServer", "ChannelCounts", "run_mirror"]

_PROVIDERS = {"pva": pva.PVA, "ca": pva.CA}
_WAITING_NOTICE_PERIOD = 30.0
_MAX_PROBE_WINDOW = 2.0


@dataclass(frozen=True)
class ChannelCounts:
    """Counters of one mirrored channel, summed over its source monitors.

    ``received``: updates delivered by the source monitors; ``published``: updates
    of ``dst``; ``skipped``: first updates of a (re)connected source monitor that
    repeated the object ``dst`` already held; ``overruns``: source updates the
    monitors' server queue had to overwrite before the mirror read them;
    ``errors``: received updates that could not be published (``skipped`` also counts
    a restarted NTNDArray source's placeholder before its first frame, uniqueId 0,
    once dst exists); ``connected``:
    source monitors whose source currently answers, of ``n_monitors``;
    ``reconnects``: times a source monitor connected again after losing its source.
    received = published + skipped + errors.
    """

    dst: str
    src: str
    provider: str
    n_monitors: int
    connected: int
    received: int
    published: int
    skipped: int
    overruns: int
    errors: int
    reconnects: int


class _SourceMonitor:
    """One monitor on a source channel, feeding its :class:`_MirroredChannel`.

    ``step`` runs on the supervisor thread only; ``_on_update`` on a pvaccess
    thread. Each counter is written by one thread and read without locking.
    """

    def __init__(self, owner: _MirroredChannel, index: int, probe_interval: float):
        self.owner = owner
        self.index = index
        self.probe_interval = probe_interval
        self.window = probe_interval
        self.request = owner.mapping.monitor_request()
        self.channel: pva.Channel | None = None
        # channel: subscribed, waiting for the source; connected: source answered.
        self.connected = False
        self.fresh = False
        self.stamped = False
        self.subscribed_at = 0.0
        self.retry_at = 0.0
        self.waiting_since = time.monotonic()
        self.notice_at = self.waiting_since + _WAITING_NOTICE_PERIOD
        self.n_received = 0
        self.n_published = 0
        self.n_skipped = 0
        self.n_errors = 0
        self.n_connects = 0
        self.closed_overruns = 0
        self._update = owner.server.update
        self._dst = owner.mapping.dst

    @property
    def name(self) -> str:
        n = self.owner.mapping.n_src_monitors
        src = self.owner.mapping.src
        return src if n == 1 else f"{src} (monitor {self.index + 1}/{n})"

    def step(self, now: float) -> None:
        """Supervise: notice a lost source, resubscribe, notice a connection.

        Connection state is polled with ``isConnected()`` rather than reported by a
        connection callback: pvaccess may run such a callback without the GIL from
        inside ``Channel.monitor()`` (seen as a fatal "PyThreadState_Get" abort
        with two monitors on one source).
        """
        channel = self.channel
        if channel is None:
            if now >= self.retry_at:
                self._subscribe(now)
        elif self.connected:
            if not channel.isConnected():
                self.drop()
                self.waiting_since = now
                self.notice_at = now + _WAITING_NOTICE_PERIOD
                self.owner.logger.warning(
                    "source %s disconnected; %s keeps its last object until it is back",
                    self.name,
                    self._dst,
                )
        elif channel.isConnected():
            self.connected = True
            self.window = self.probe_interval
            self.n_connects += 1
            self.owner.logger.info(
                "source %s connected after %.1f s; request %s",
                self.name,
                now - self.waiting_since,
                self.request,
            )
        elif now - self.subscribed_at >= self.window:
            # A fresh channel searches at once; a long-lived one backs off further
            # and further while the source is away. Each unanswered attempt waits
            # twice as long as the one before, up to _MAX_PROBE_WINDOW, so that a
            # far or busy source has time to answer.
            self.window = min(self.window * 2, max(_MAX_PROBE_WINDOW, self.probe_interval))
            self._subscribe(now)
        if not self.connected and now >= self.notice_at:
            self.notice_at = now + _WAITING_NOTICE_PERIOD
            self.owner.logger.warning(
                "still waiting for source %s (%.0f s): if it is running, check the channel "
                "name and that it can be reached (%s)",
                self.name,
                now - self.waiting_since,
                search_settings(self.owner.mapping.provider == "ca"),
            )

    def _subscribe(self, now: float) -> None:
        """Monitor the source on a fresh channel; it connects when the source answers."""
        self.drop()
        provider = _PROVIDERS[self.owner.mapping.provider]
        channel = pva.Channel(self.owner.mapping.src, provider)
        self.fresh = True
        self.subscribed_at = now
        try:
            channel.monitor(self._on_update, self.request)
        except pva.PvaException as exc:
            self.owner.logger.error(
                "cannot monitor source %s with request %r: %s", self.name, self.request, exc
            )
            self.retry_at = now + _MAX_PROBE_WINDOW
            return
        self.channel = channel

    def _on_update(self, pv) -> None:
        self.n_received += 1
        owner = self.owner
        if self.fresh:
            # A monitor's first update is the source's current object. After a
            # network blip, or from the second of several monitors, that is the
            # object dst already holds: do not publish it twice.
            self.fresh = False
            try:
                stamp = _stamp(pv) if pv.hasField("timeStamp") else None
            except Exception:  # noqa: BLE001 - a time stamp of another shape
                stamp = None
            # Without a time stamp (or with an unset one) objects cannot be told
            # apart: publish them all.
            self.stamped = stamp is not None and stamp != (0, 0, 0)
            if not self.stamped:
                owner.last_stamp = None
            elif owner.last_stamp == stamp:
                self.n_skipped += 1
                return
            if _placeholder(pv) and owner.server.hasRecord(owner.mapping.dst):
                # An NTNDArray source's value before its first frame (uniqueId 0: a
                # restarted detector's or simulator's record not yet written): not a
                # frame. (The first one creates dst, for clients to connect early.)
                self.n_skipped += 1
                return
        try:
            self._update(self._dst, pv)
        except Exception:  # noqa: BLE001 - first object, new structure, or a real error
            if not owner.publish_slow(pv, self):
                self.n_errors += 1
                return
        self.n_published += 1
        if self.stamped:
            owner.last_stamp = _stamp(pv)

    def overruns(self) -> int:
        channel = self.channel
        current = 0
        if self.connected and channel is not None:
            try:
                current = int(channel.getMonitorCounters().get("nOverruns", 0))
            except pva.PvaException:
                current = 0
        return self.closed_overruns + current

    def drop(self) -> None:
        """Stop the monitor and forget the channel. Supervisor thread, or after it."""
        channel, self.channel = self.channel, None
        was_connected, self.connected = self.connected, False
        if channel is None:
            return
        if was_connected:
            try:
                self.closed_overruns += int(channel.getMonitorCounters().get("nOverruns", 0))
            except pva.PvaException:
                pass
        try:
            channel.stopMonitor()
        except pva.PvaException:
            pass


def _stamp(pv) -> tuple[int, int, int]:
    """What tells one object of a source from the next: its time stamp and user tag."""
    return (
        pv.getLong("timeStamp.secondsPastEpoch"),
        pv.getInt("timeStamp.nanoseconds"),
        pv.getInt("timeStamp.userTag"),
    )


class _MirroredChannel:
    """One ``dst`` record and the monitors on its ``src``."""

    def __init__(
        self,
        mapping: ChannelMapping,
        server: pva.PvaServer,
        logger: logging.Logger,
        probe_interval: float,
    ):
        self.mapping = mapping
        self.server = server
        self.logger = logger
        self.lock = threading.Lock()
        self.error_count = 0
        # Time stamp of the object dst holds (written by the monitor threads).
        self.last_stamp: tuple[int, int, int] | None = None
        self.monitors = [
            _SourceMonitor(self, i, probe_interval) for i in range(mapping.n_src_monitors)
        ]

    def publish_slow(self, pv, monitor: _SourceMonitor) -> bool:
        """Publish when the plain update failed: create ``dst``, or re-create it.

        Called on a pvaccess thread. ``dst`` is created from the first object; if a
        restarted source sends objects of another structure, ``dst`` is re-created
        with the new one (its clients reconnect). Returns whether ``dst`` now holds
        ``pv``.
        """
        dst = self.mapping.dst
        with self.lock:
            try:
                if not self.server.hasRecord(dst):
                    self.server.addRecord(dst, pv.copy())
                    self.logger.info("serving %s", dst)
                    return True
                try:
                    self.server.update(dst, pv)
                    return True
                except ValueError:
                    self.logger.warning(
                        "source %s changed its structure; re-creating %s", monitor.name, dst
                    )
                    self.server.removeRecord(dst)
                    self.server.addRecord(dst, pv.copy())
                    return True
            except Exception as exc:  # noqa: BLE001 - counted and logged, never raised
                self.error_count += 1
                if self.error_count <= 10 or self.error_count % 1000 == 0:
                    self.logger.error(
                        "cannot publish on %s (error %d): %s", dst, self.error_count, exc
                    )
                return False

    def counts(self) -> ChannelCounts:
        m = self.mapping
        mons = self.monitors
        return ChannelCounts(
            dst=m.dst,
            src=m.src,
            provider=m.provider,
            n_monitors=len(mons),
            connected=sum(1 for x in mons if x.connected),
            received=sum(x.n_received for x in mons),
            published=sum(x.n_published for x in mons),
            skipped=sum(x.n_skipped for x in mons),
            overruns=sum(x.overruns() for x in mons),
            errors=sum(x.n_errors for x in mons),
            reconnects=sum(max(0, x.n_connects - 1) for x in mons),
        )


class MirrorServer:
    """Serve each mapping's ``dst`` with the latest object of its ``src``.

    ``start()`` creates the PvaServer and the supervisor thread and returns at once;
    sources that are not there yet are waited for, and lost sources are followed
    when they come back, until ``stop()``. ``stop()`` stops the monitors first, so
    that :meth:`counts` is final afterwards, then the server. Both may be called
    from any thread; ``stop()`` is idempotent and blocks for at most about a second.
    """

    def __init__(
        self,
        mappings: Sequence[ChannelMapping],
        *,
        probe_interval: float = 0.5,
        logger: logging.Logger | None = None,
    ):
        if not mappings:
            raise ValueError("a mirror server needs at least one channel mapping")
        self.mappings = list(mappings)
        self.probe_interval = probe_interval
        self.logger = logger or get_logger("mirror")
        self.server: pva.PvaServer | None = None
        self._channels: list[_MirroredChannel] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._tick = min(0.05, probe_interval / 4)

    def start(self) -> None:
        """Create the server and start following the sources."""
        if self.server is not None:
            return
        self.server = pva.PvaServer()
        self._channels = [
            _MirroredChannel(m, self.server, self.logger, self.probe_interval)
            for m in self.mappings
        ]
        for m in self.mappings:
            self.logger.info("mirroring %s", m.describe())
        self._thread = threading.Thread(target=self._supervise, name="pvhpc-mirror", daemon=True)
        self._thread.start()

    def _supervise(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            for channel in self._channels:
                for monitor in channel.monitors:
                    try:
                        monitor.step(now)
                    except Exception:  # noqa: BLE001 - keep supervising the others
                        self.logger.exception("supervising source %s", monitor.name)
            self._stop.wait(self._tick)

    def stop(self) -> None:
        """Stop the monitors and the server; counts are final afterwards."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None
        for channel in self._channels:
            for monitor in channel.monitors:
                monitor.drop()
        if self.server is not None:
            try:
                self.server.stop()
            except pva.PvaException:
                pass

    def counts(self) -> list[ChannelCounts]:
        """Current counters of every mirrored channel, in channel-map order."""
        return [c.counts() for c in self._channels]

    def __enter__(self) -> MirrorServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


_MAX_SLEEP = 0.2


def _placeholder(pv) -> bool:
    """Whether ``pv`` is an NTNDArray with uniqueId 0: no frame yet."""
    try:
        return pv.hasField("uniqueId") and pv.hasField("dimension") and pv["uniqueId"] == 0
    except Exception:  # noqa: BLE001 - a uniqueId of another type: a frame
        return False


def run_mirror(
    mirror: MirrorServer,
    runtime: float,
    report_period: float,
    stop: threading.Event,
    report: Callable[[Sequence[ChannelCounts], Sequence[ChannelCounts] | None, float, bool], None],
) -> None:
    """Run ``mirror`` until ``runtime`` seconds passed (<= 0: no limit) or ``stop`` is set.

    Calls ``report(counts, previous, elapsed, final)`` every ``report_period`` seconds
    (<= 0: never) with the change since the previous report, and once at the end with
    the totals (``previous`` None, ``connected`` as it was at the stop). The main
    thread waits at most 0.2 s at a time, so a signal is seen promptly.
    """
    started = time.monotonic()
    mirror.start()
    try:
        period = report_period if report_period > 0 else None
        next_report = started + period if period else math.inf
        deadline = started + runtime if runtime > 0 else math.inf
        last_counts, last_time = None, started
        while not stop.is_set():
            now = time.monotonic()
            if now >= deadline:
                break
            if now >= next_report:
                counts = mirror.counts()
                report(counts, last_counts, now - last_time, False)
                last_counts, last_time = counts, now
                # Skip reports that a stalled main thread missed rather than bursting.
                while next_report <= now:
                    next_report += period  # type: ignore[operator]
            stop.wait(max(0.0, min(_MAX_SLEEP, deadline - now, next_report - now)))
    finally:
        at_stop = mirror.counts()
        mirror.stop()
        final = [replace(c, connected=s.connected) for c, s in zip(mirror.counts(), at_stop)]
        report(final, None, time.monotonic() - started, True)
