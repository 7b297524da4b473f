"""p4p (PVXS) on the other end of our channels: an NTNDArray source served by p4p, and
p4p client helpers (gets that wait for the channel, monitors that record what came).

p4p runs in the test process, next to pvaccess: the two embed separate EPICS
libraries (pvaccess its own libCom 3.23, p4p epicscorelibs' libCom 7.0 and PVXS),
each resolved within its own extension module; servers, clients and monitors of both
in one process were checked to work together (also from several threads at once).

Frames are known from their id alone (:func:`image`), so a reader can compare every
frame it got with what the source sent, pixel for pixel.
"""

from __future__ import annotations

import threading
import time

import numpy as np
from p4p.client.thread import Context
from p4p.nt import NTNDArray
from p4p.server import Server
from p4p.server.thread import SharedPV

from harness import wait_for

SHAPE = (12, 16)  # rows, columns: small frames, quick to compare


def image(unique_id: int, shape: tuple[int, ...] = SHAPE, dtype=np.uint16) -> np.ndarray:
    """The frame a :class:`P4pSource` sends with ``uniqueId`` ``unique_id``."""
    rng = np.random.default_rng(unique_id)
    if np.dtype(dtype).kind == "f":
        return (rng.standard_normal(size=shape) * 1e3).astype(dtype)
    return rng.integers(0, np.iinfo(dtype).max, size=shape, dtype=dtype, endpoint=True)


class P4pSource:
    """An NTNDArray channel served by a p4p server (PVXS), which has no distributor
    plugin. Frames carry ``uniqueId``, ``timeStamp`` and ``dataTimeStamp`` (p4p's
    ``NTNDArray.wrap`` leaves the stamps unset; the distributor of a next stage tells
    updates apart by ``timeStamp``)."""

    def __init__(self, channel: str, shape: tuple[int, ...] = SHAPE, dtype=np.uint16):
        self.channel = channel
        self.shape = shape
        self.dtype = dtype
        self.nt = NTNDArray()
        # A SharedPV must be opened with a value of the type it will post.
        self.pv = SharedPV(initial=self.wrap(0, np.zeros(shape, dtype)))
        self.server = Server(providers=[{channel: self.pv}])
        self.sent: list[int] = []

    def wrap(self, unique_id: int, pixels: np.ndarray | None = None):
        pixels = image(unique_id, self.shape, self.dtype) if pixels is None else pixels
        value = self.frame_value(unique_id, pixels)
        value["uniqueId"] = unique_id
        now = time.time()
        stamp = {"secondsPastEpoch": int(now), "nanoseconds": int((now % 1) * 1e9)}
        value["timeStamp"] = stamp
        value["dataTimeStamp"] = stamp
        return value

    def frame_value(self, unique_id: int, pixels: np.ndarray):
        """The frame's ``Value`` before its id and stamps are set (a subclass adds
        what its frames carry besides)."""
        return self.nt.wrap(pixels)

    def post(self, unique_id: int) -> None:
        self.pv.post(self.wrap(unique_id))
        self.sent.append(unique_id)

    def publish(self, ids, rate: float = 100.0) -> list[int]:
        """Post frames with these ids, paced at ``rate`` per second (against absolute
        deadlines: a rate, not a synchronisation)."""
        ids = list(ids)
        start = time.monotonic()
        for k, unique_id in enumerate(ids, 1):
            self.post(unique_id)
            delay = start + k / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        return ids

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


def publish_interleaved(sources: list[P4pSource], ids, rate: float = 100.0) -> None:
    """Post ``ids`` in order, in turn on each source: the first id on the first source,
    the second on the second, … (paced at ``rate`` per second over all sources)."""
    start = time.monotonic()
    for k, unique_id in enumerate(ids):
        sources[k % len(sources)].post(unique_id)
        delay = start + (k + 1) / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def p4p_context() -> Context:
    """A p4p client context that hands out plain ``Value``s (``nt=False``).

    p4p 4.3 unwraps with one ``ClientUnwrapper`` per context, shared by all its gets and
    monitors; after a structure without NT id (a status) it stops unwrapping NTNDArrays
    (its remembered id is not reset), so a monitor of frames would get raw Values once
    the test read a status in between. :class:`P4pMonitor` unwraps NTNDArrays itself."""
    return Context("pva", nt=False)


def as_frame(value):
    """An NTNDArray ``Value`` as p4p decodes it (a numpy array of the frame's shape and
    type, with ``.raw``); any other value unchanged."""
    if value.getID().startswith("epics:nt/NTNDArray:"):
        return NTNDArray.unwrap(value)
    return value


def p4p_get(ctx: Context, channel: str, timeout: float = 20, **kw):
    """``ctx.get`` retried until the channel answers or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            return ctx.get(channel, timeout=2.0, **kw)
        except Exception as exc:  # TimeoutError, Disconnected, RemoteError
            last = exc
            time.sleep(0.1)
    raise AssertionError(f"p4p: channel {channel} not reachable in {timeout}s: {last!r}")


class P4pMonitor:
    """A p4p monitor that keeps every update it gets (an NTNDArray decoded by p4p's
    ``NTNDArray.unwrap``: a numpy array with ``.raw``; other structures, and every
    update with ``raw=True``, as ``Value``; p4p cannot unwrap compressed frames)."""

    def __init__(
        self,
        ctx: Context,
        channel: str,
        request: str = "record[queueSize=1000]",
        raw: bool = False,
    ):
        self.channel = channel
        self.values: list = []
        self._lock = threading.Lock()
        self._decode = (lambda value: value) if raw else as_frame
        self._sub = ctx.monitor(channel, self._on_update, request=request)

    def _on_update(self, value) -> None:
        with self._lock:
            self.values.append(self._decode(value))

    def snapshot(self) -> list:
        with self._lock:
            return list(self.values)

    def wait_count(self, n: int, timeout: float, procs=None) -> list:
        """Wait until at least ``n`` updates came; return them all."""
        wait_for(
            lambda: len(self.values) >= n,
            timeout,
            f"{n} p4p updates on {self.channel} (got {len(self.values)})",
            procs=procs,
        )
        return self.snapshot()

    def close(self) -> None:
        self._sub.close()


def unique_id(value) -> int:
    """The ``uniqueId`` of an update a :class:`P4pMonitor` got."""
    raw = getattr(value, "raw", value)
    return int(raw["uniqueId"])
