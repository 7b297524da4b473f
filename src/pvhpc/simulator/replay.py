"""Replaying a recording (``-if run.h5``, a file written by ``pvhpc record``).

Each recorded frame is served as it was carried: the same bytes (compressed with
the recorded codec, or not), dimensions and attributes. ``--timing original``
sends frame *k* at ``t0 + (t_k - t_0) / speed``, ``t`` being the recorded
``timeStamp`` (or, where the source gave none, the arrival time); its timestamps are
the recorded ones moved to now (``dataTimeStamp`` keeps its distance to
``timeStamp``), so the stream's timing, gaps and bursts included, plays again.
``--timing rate`` sends the frames evenly at ``--frame-rate``, stamped now, as the
simulator does with any input.

Ids: ``--ids original`` serves the recorded ``uniqueId`` values, ``new`` counts from 1.
Looping (``--loop``, and always with ``--timing rate``) continues the ids: loop *L*
adds *L* times the recording's id span, so that a consumer never sees them restart.

Metadata channels are served as recorded (PVA records on the simulator's server,
CA ones on its embedded IOC), each update at its recorded place: before the first
frame that was not older than it, and in a long gap at its recorded time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pvaccess as pva

from ..errors import UsageError
from ..ntnda import dimension_entry, scalar_type_code, value_field_for
from ..record.reader import Recording
from . import frames as frames_module
from .config import ID_MODES, TIMING_MODES, SimulatorConfig

__all__ = ["ID_MODES", "MetadataPlayer", "Replay", "TIMING_MODES"]

logger = logging.getLogger("pvhpc.simulator")


# pvData scalar type codes (as pvaccess.ScalarType numbers them) → the PvObject
# that carries an attribute value of that type.
_SCALARS: dict[int, Callable[[Any], Any]] = {
    0: lambda v: pva.PvBoolean(bool(v)),
    2: lambda v: pva.PvShort(int(v)),
    3: lambda v: pva.PvInt(int(v)),
    4: lambda v: pva.PvLong(int(v)),
    5: lambda v: pva.PvUByte(int(v)),
    6: lambda v: pva.PvUShort(int(v)),
    7: lambda v: pva.PvUInt(int(v)),
    8: lambda v: pva.PvULong(int(v)),
    9: lambda v: pva.PvFloat(float(v)),
    10: lambda v: pva.PvDouble(float(v)),
    11: lambda v: pva.PvString(str(v)),
}
_TEMPLATE = pva.NtNdArray()


def _scalar(value: Any, code: int) -> Any:
    make = _SCALARS.get(code)
    if make is None:  # BYTE (pvaccess takes no integer for it) or unknown
        if isinstance(value, str):
            return pva.PvString(value)
        return pva.PvInt(int(value)) if float(value).is_integer() else pva.PvDouble(float(value))
    return make(value)


class Replay:
    """A recording opened for replay, with its schedule, ids and metadata.

    Built in the main thread (reads the per-frame values; raises UsageError for a
    file that cannot be replayed as asked). :meth:`frame` is called by the
    simulator's publishing thread, and by the prefetch thread for recordings larger
    than the frame cache.
    """

    def __init__(self, config: SimulatorConfig):
        c = config
        self.rec = rec = Recording(c.input_file or "", "--input-file")
        n = rec.n_frames if not c.n_frames else min(rec.n_frames, c.n_frames)
        if n == 0:
            raise UsageError(f"--input-file: {c.input_file!r} holds no frames")
        self.n = n
        self.original = c.timing == "original"
        self.speed = c.speed
        self.loop = c.loop
        self.new_ids = (c.ids or ("original" if self.original else "new")) == "new"
        source = rec.timing()
        if self.original and (source is None or n < 2):
            raise UsageError(
                f"--timing original: {c.input_file!r} holds no recorded timing (fewer "
                "than two frames with increasing times); use --timing rate"
            )
        self.time_source = source or "arrivalTime"
        times = (rec.time_stamps if source == "timeStamp" else rec.arrivals)[:n]
        self.times = times
        offsets = (times - times[0]) / c.speed if self.original else np.arange(n) / c.frame_rate
        self.offsets = offsets
        mean_gap = offsets[-1] / (n - 1) if n > 1 else 1.0 / c.frame_rate
        self.span = offsets[-1] + mean_gap
        ids = rec.ids[:n].astype(np.int64)
        steps = np.diff(ids)
        step = int(np.median(steps[steps > 0])) if np.any(steps > 0) else 1
        self.ids = ids
        self.id_span = int(ids[-1] - ids[0]) + step
        # dataTimeStamp's distance before timeStamp, kept on replay.
        dts = rec.data_time_stamps[:n]
        self.data_lag = np.where(dts > 0, rec.time_stamps[:n] - dts, 0.0)
        self.attributes = list(rec.attributes)
        self.nominal_rate = (
            (n - 1) / offsets[-1] if self.original and offsets[-1] > 0 else c.frame_rate
        )
        self._describe(c)
        self._frames: list[pva.NtNdArray] | None = None
        self._prefetch: _Prefetch | None = None
        # Within the memory budget every frame is built before the first goes out;
        # a larger recording is read ahead, at most --cache-size frames.
        frame_bytes = max(1, rec.nbytes)
        budget = frames_module.DEFAULT_MEMORY_BUDGET
        if n * frame_bytes <= budget:
            self._frames = [self.build(k) for k in range(n)]
        else:
            self._depth = max(2, min(c.cache_size, budget // frame_bytes))
        self.metadata = _events(rec, self, n)

    def _describe(self, c: SimulatorConfig) -> None:
        """Show the recording's frames in the simulator's report."""
        shape = self.rec.shape
        c.ny, c.nx = (shape[-2], shape[-1]) if len(shape) >= 2 else (1, shape[0])
        c.datatype = self.rec.dtype.name
        modes = [a for a in self.rec.attributes if a.name == "ColorMode"]
        mode = int(modes[0].values[0]) if modes and len(modes[0].values) else 0
        c.color_mode = mode if mode in (0, 2, 3, 4) else 0
        c.compression_codec = self.rec.codec or None

    @property
    def n_total(self) -> int:
        """Frames to send (0: as many as the runtime allows)."""
        return 0 if (self.loop or not self.original) else self.n

    # -- the schedule and the ids ---------------------------------------------------

    def due(self, i: int) -> float:
        """Seconds after the first frame when frame ``i`` (0-based, over loops) is due."""
        if i >= self.n and not (self.loop or not self.original):
            return self.span
        loop, k = divmod(i, self.n)
        return loop * self.span + self.offsets[k]

    def unique_id(self, i: int) -> int:
        if self.new_ids:
            return i + 1
        loop, k = divmod(i, self.n)
        return int(self.ids[k]) + loop * self.id_span

    # -- frames ----------------------------------------------------------------------

    def build(self, k: int) -> pva.NtNdArray:
        """Recorded frame ``k`` as an NTNDArray, its bytes as recorded (uniqueId 0)."""
        rec = self.rec
        codec, payload = rec.chunk(k)
        frame = pva.NtNdArray(_TEMPLATE.copy())
        if codec:
            frame.setValue({"ubyteValue": payload})
            frame["codec"] = {"name": codec, "parameters": pva.PvInt(scalar_type_code(rec.dtype))}
        else:
            frame.setValue({value_field_for(rec.dtype): payload.view(rec.dtype)})
        frame["compressedSize"] = int(payload.size)
        frame["uncompressedSize"] = int(rec.nbytes)
        frame["dimension"] = [dimension_entry(s) for s in reversed(rec.shape)]
        frame["attribute"] = [
            {
                "name": a.name,
                "value": _scalar(a.values[k], a.type_code),
                "descriptor": a.descriptor,
                "sourceType": a.source_type,
                "source": a.source,
            }
            for a in self.attributes
        ]
        return frame

    def frame(self, i: int) -> pva.NtNdArray:
        """The frame to send as frame ``i`` (0-based, over loops)."""
        if self._frames is not None:
            return self._frames[i % self.n]
        if self._prefetch is None:
            self._prefetch = _Prefetch(self, self._depth)
        return self._prefetch.take(i)

    def first(self) -> pva.NtNdArray:
        """Frame 0 of the channel (the first recorded frame), a copy of its own."""
        return (self._frames[0] if self._frames is not None else self.build(0)).copy()

    def data_lag_ns(self, i: int) -> int:
        """How long before its ``timeStamp`` frame ``i``'s ``dataTimeStamp`` was (ns)."""
        return int(round(self.data_lag[i % self.n] * 1e9))

    def close(self) -> None:
        if self._prefetch is not None:
            self._prefetch.stop()
        self.rec.close()


class _Prefetch:
    """Builds frames ahead, in a thread, for a recording larger than the cache."""

    def __init__(self, replay: Replay, depth: int):
        self.replay = replay
        self.depth = depth
        self.ready: dict[int, pva.NtNdArray] = {}
        self.next = 0
        self.wanted = 0
        self.cond = threading.Condition()
        self.stopped = False
        self.thread = threading.Thread(target=self._run, name="replay-prefetch", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            with self.cond:
                while not self.stopped and self.next - self.wanted >= self.depth:
                    self.cond.wait(0.5)
                if self.stopped:
                    return
                i = self.next
            frame = self.replay.build(i % self.replay.n)
            with self.cond:
                self.ready[i] = frame
                self.next = i + 1
                self.cond.notify_all()

    def take(self, i: int) -> pva.NtNdArray:
        with self.cond:
            self.wanted = i
            self.cond.notify_all()
            while i not in self.ready:
                self.cond.wait(0.5)
            for old in [j for j in self.ready if j < i]:
                del self.ready[old]
            return self.ready.pop(i)

    def stop(self) -> None:
        with self.cond:
            self.stopped = True
            self.cond.notify_all()


class _Event:
    __slots__ = ("index", "offset", "name", "protocol", "value", "with_frame")

    def __init__(self, index: int, offset: float, name: str, protocol: str, value: Any):
        self.index, self.offset = index, offset
        self.name, self.protocol, self.value = name, protocol, value
        #: Due less than WITH_FRAME before its frame: published with it, not on its own.
        self.with_frame = False


# An update due this little before the frame it goes with is published just before
# that frame; only updates in longer gaps get a time of their own.
WITH_FRAME = 0.005


def _events(rec: Recording, replay: Replay, n: int) -> list[_Event]:
    """Every recorded metadata update, placed before the first frame not older than it
    (and, with the original timing, at its own time after the first frame)."""
    times = replay.times
    by_stamp = replay.time_source == "timeStamp"
    # An update without a timestamp of its own (a channel's initial value) is placed
    # by its arrival, moved onto the clock of the frames' timestamps.
    shift = float(times[0] - rec.arrivals[0]) if by_stamp else 0.0
    speed = replay.speed
    events = []
    for log in rec.metadata:
        if by_stamp:
            t = np.where(log.time_stamps > 0, log.time_stamps, log.arrivals + shift)
        else:
            t = log.arrivals
        index = np.searchsorted(times, t, side="left")
        for value, k, tk in zip(log.values, index, t):
            if replay.original:
                offset = float(tk - times[0]) / speed
            else:
                offset = float(replay.offsets[min(int(k), n - 1)])
            event = _Event(int(k), offset, log.name, log.protocol, value)
            event.with_frame = k < n and replay.offsets[k] - offset < WITH_FRAME
            events.append(event)
    events.sort(key=lambda e: (e.index, e.offset))
    return events


class MetadataPlayer:
    """Publishes the recorded metadata updates at their places in the replay.

    :meth:`until_frame` (publishing thread, before frame ``i`` goes out) publishes
    every update placed before that frame; with the original timing, a thread of
    its own also publishes each update at its time, so that one recorded in a long
    gap comes in that gap. ``publish(event, offset)`` gets the update and its time in
    seconds after the first frame. Updates repeat with every loop when the replay loops.
    """

    def __init__(
        self,
        replay: Replay,
        publish: Callable[[_Event, float], None],
        stop_event: threading.Event,
    ):
        self.events = replay.metadata
        self.n = replay.n
        self.span = replay.span
        self.repeat = replay.loop or not replay.original
        self.publish = publish
        self.stop_event = stop_event
        self.next = 0  # over loops: event next % len, loop next // len
        self.lock = threading.Lock()
        self.start: float | None = None
        self.thread: threading.Thread | None = None
        if self.events and replay.original:
            self.thread = threading.Thread(target=self._run, name="replay-metadata", daemon=True)

    def _event(self, g: int) -> tuple[_Event, int] | None:
        m = len(self.events)
        if not m or (g >= m and not self.repeat):
            return None
        loop, j = divmod(g, m)
        return self.events[j], loop

    def until_frame(self, i: int) -> None:
        """Publish every update placed before frame ``i`` (0-based, over loops)."""
        if self.start is None:
            self.start = time.perf_counter()
            if self.thread is not None:
                self.thread.start()
        floop, k = divmod(i, self.n)
        with self.lock:
            while (item := self._event(self.next)) is not None:
                event, loop = item
                if (loop, event.index) > (floop, k):
                    break
                self.next += 1
                self.publish(event, loop * self.span + event.offset)

    def _run(self) -> None:
        assert self.start is not None
        while not self.stop_event.is_set():
            with self.lock:
                item = self._event(self.next)
            if item is None:
                return
            event, loop = item
            if event.with_frame:
                # The publishing thread sends it with its frame; look again later.
                if self.stop_event.wait(WITH_FRAME):
                    return
                continue
            due = self.start + loop * self.span + event.offset
            wait = due - time.perf_counter()
            if wait > 0 and self.stop_event.wait(wait):
                return
            with self.lock:
                if self._event(self.next) == item:
                    self.next += 1
                    self.publish(event, loop * self.span + event.offset)

    def rest(self) -> None:
        """After the last frame of a replay that does not loop: publish what is left."""
        with self.lock:
            while not self.repeat and (item := self._event(self.next)) is not None:
                self.next += 1
                self.publish(item[0], item[0].offset)
