"""Metadata channels (``--metadata-channels``): monitored into the queues processors read."""

from __future__ import annotations

import logging
import time

import pvaccess as pva

from ..loopback import search_settings
from ..receiver import ABSENT_WARNING_AFTER, absent_message
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
        self.started_at = 0.0
        #: Whether a server ever answered (polled by :meth:`watch`), and whether the
        #: stage was told one has not.
        self.answered = False
        self._said_absent = False

    def start(self) -> None:
        self.started_at = time.monotonic()
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
        if not self._poll() and not self._said_absent and self.started_at:
            if now - self.started_at >= ABSENT_WARNING_AFTER:
                self._said_absent = True
                logger.warning(
                    "%s",
                    absent_message(
                        f"metadata channel {self.name}", self.provider, ABSENT_WARNING_AFTER
                    ),
                )

    def say_if_never_answered(self, logger: logging.Logger) -> None:
        """At the end of a run that went as asked: a warning if no server ever
        answered for the channel."""
        if self.started_at and not self._poll():
            logger.warning(
                "metadata channel %s: no server answered in the %.0f s this ran, no "
                "value was received%s",
                self.name,
                time.monotonic() - self.started_at,
                "" if self._said_absent else f" ({search_settings(self.provider == pva.CA)})",
            )

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
