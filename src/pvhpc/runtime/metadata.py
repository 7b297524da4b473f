"""Metadata channels (``--metadata-channels``): monitored into the queues processors read."""

from __future__ import annotations

import pvaccess as pva

from ..request import monitor_request

__all__ = ["MetadataChannel", "field_key"]


class MetadataChannel:
    """One metadata channel monitored into the ``PvObjectQueue`` processors read."""

    def __init__(self, protocol: str, name: str, queue_size: int, server_queue_size: int = 0):
        self.protocol = protocol
        self.server_queue_size = server_queue_size
        self.name = name
        self.queue = pva.PvObjectQueue(queue_size) if queue_size > 0 else pva.PvObjectQueue()
        self.channel = pva.Channel(name, pva.PVA if protocol == "pva" else pva.CA)

    def start(self) -> None:
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
