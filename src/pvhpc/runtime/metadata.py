"""Metadata channels (``--metadata-channels``): monitored into the queues processors read."""

from __future__ import annotations

import logging
import time

import pvaccess as pva

from ..receiver import AbsenceNotice
from ..request import monitor_request

__all__ = ["MetadataChannel", "field_key"]


class MetadataChannel:
    """One metadata channel monitored into the ``PvObjectQueue`` processors read."""

    def __init__(self, protocol: str, name: str, queue_size: int, server_queue_size: int = 0):
        self.protocol = protocol
        self.server_queue_size = server_queue_size
        self.name = name
        self.queue = pva.PvObjectQueue(queue_size) if queue_size > 0 else pva.PvObjectQueue()
        self.provider = pva.PVA if protocol == "pva" else pva.CA
        self.channel = pva.Channel(name, self.provider)
        #: Whether a server ever answered (polled by :meth:`watch` until one did).
        self.answered = False
        self._absence = AbsenceNotice(f"metadata channel {name}", self.provider)

    def start(self) -> None:
        self._absence.start(time.monotonic())
        if self.protocol == "pva":
            # The same server queue as the input channel: a consumer held up for a
            # moment must not lose metadata values any more than frames.
            request = monitor_request(server_queue_size=self.server_queue_size)
        else:
            request = "field(value,timeStamp)"
        self.channel.qMonitor(self.queue, request)

    def stop(self) -> None:
        try:
            self.channel.stopMonitor()
        except pva.PvaException:
            pass

    def watch(self, now: float, logger: logging.Logger) -> None:
        """Until a server answered: a warning, once, ``ABSENT_WARNING_AFTER`` seconds
        after start (main thread, every tick)."""
        self._absence.check(now, self._poll, logger)

    def say_if_never_answered(self, logger: logging.Logger) -> None:
        """At the end of a run that went as asked: a warning if no server ever
        answered for the channel."""
        self._absence.final(self._poll(), logger, "no value was received")

    def _poll(self) -> bool:
        """Whether a server ever answered (asked until one did)."""
        if not self.answered:
            try:
                self.answered = bool(self.channel.isConnected())
            except pva.PvaException:
                pass
        return self.answered

    def stats(self) -> dict:
        counters = self.queue.getCounters()
        try:
            monitor = self.channel.getMonitorCounters()
        except pva.PvaException:
            monitor = {}
        return {
            "nReceived": int(counters.get("nReceived", 0)),
            "nOverruns": int(monitor.get("nOverruns", 0)),
            "nRejected": int(counters.get("nRejected", 0)),
            "nDelivered": int(counters.get("nDelivered", 0)),
            "nQueued": int(counters.get("nQueued", 0)),
        }


def field_key(name: str) -> str:
    """A channel name as a PVA field name (``metadataStats`` has a field per channel)."""
    key = "".join(c if c.isalnum() else "_" for c in name)
    return key if key and not key[0].isdigit() else "_" + key
