"""The recorder: captured frames and metadata into recording files, with limits,
numbered files, a check of the disk before every frame, and the flight recorder.

:class:`Recorder` is thread-safe: frames come from the processing (or monitor)
thread and are written by a writer thread of the recorder's own (HDF5 writes let
other threads run, so receiving and writing overlap), metadata and periodic flushes
come from the recording processor's own thread, dumps from the control thread. Each file is written under its final name and is
complete up to its last frame after every flush (at least every
``flush_period`` seconds) and after :meth:`Recorder.close`.

Numbered files (``run_0001.h5``, ``run_0002.h5``…) are made when a frame or size
limit per file starts the next one, for every flight-recorder dump, and when a
frame of another shape, type or codec arrives (its file cannot hold it).
"""

from __future__ import annotations

import collections
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from ..errors import UsageError
from .capture import CapturedFrame
from .layout import RecordFile, import_h5py
from .trigger import Trigger

__all__ = ["RecordSettings", "Recorder", "check_output_path"]

logger = logging.getLogger("pvhpc.record")

#: Free space left on the disk: a frame that would leave less ends the recording, so
#: that the file can still be flushed and closed (its index, the per-frame values).
RESERVE_BYTES = 4 << 20
#: Frames taken but not yet written, at most this many bytes: beyond, the frame's
#: thread waits (the server queue then holds the stream back).
WRITE_QUEUE_BYTES = 256 << 20


@dataclass
class RecordSettings:
    """What to record where, and when to stop or start the next file (0: no limit).

    ``metadata`` maps each metadata channel to its protocol (``pva``/``ca``), as
    replay serves it again. ``ring_seconds > 0`` is the flight recorder: frames are
    kept in memory for that long and written only by :meth:`Recorder.dump`; never
    more than ``ring_bytes`` of frame data (0: a quarter of this machine's memory), the
    oldest frames leaving early when a stream is too heavy for that.
    """

    output_file: str
    channel: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    max_frames: int = 0
    max_bytes: int = 0
    file_frames: int = 0
    file_bytes: int = 0
    ring_seconds: float = 0.0
    ring_bytes: int = 0
    trigger: Trigger | None = None
    flush_period: float = 1.0
    reserve_bytes: int = RESERVE_BYTES

    @property
    def ring_limit(self) -> int:
        """The most frame data the ring holds, bytes (``ring_bytes`` or its default)."""
        return self.ring_bytes or default_ring_bytes()

    @property
    def numbered(self) -> bool:
        """Whether files are numbered from the first one on."""
        return bool(self.file_frames or self.file_bytes or self.ring_seconds)


def default_ring_bytes() -> int:
    """A quarter of this machine's physical memory, 1 GiB where it cannot be read (a
    dump being written holds its frames as well as the ring)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 4
    except (ValueError, OSError):
        return 1 << 30


def numbered_path(path: str, number: int) -> str:
    """``run.h5`` → ``run_0003.h5`` for ``number`` 3."""
    stem, ext = os.path.splitext(path)
    return f"{stem}_{number:04d}{ext or '.h5'}"


def check_output_path(settings: RecordSettings, option: str = "--output-file") -> None:
    """UsageError unless the first file can be made: its folder exists and can be
    written, and no file of that name exists (a recording never overwrites one)."""
    path = settings.output_file
    if not path or path.endswith(os.sep):
        raise UsageError(f"{option}: {path!r} is not a file name")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UsageError(f"{option}: folder {folder!r} of {path!r} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"{option}: folder {folder!r} cannot be written")
    first = numbered_path(path, 1) if settings.numbered else path
    if os.path.exists(first):
        raise UsageError(f"{option}: {first!r} exists; a recording never overwrites a file")


class Recorder:
    """Write captured frames and metadata updates to recording files (thread-safe).

    After the recording ended (a limit, a full disk, a write error) ``finished``
    says why, in one line, and ``failed`` whether it was an error; frames given
    after that are counted in ``n_not_recorded``.
    """

    def __init__(self, settings: RecordSettings):
        import_h5py()
        self.settings = settings
        self._lock = threading.RLock()
        self._file: RecordFile | None = None
        self._file_number = 0
        self._pending_metadata: list[tuple[str, Any, float, float]] = []
        self._last_flush = time.monotonic()
        self.finished: str | None = None
        self.failed = False
        self.files: list[str] = []
        self.n_recorded = 0
        self.n_not_recorded = 0
        self.n_metadata = 0
        self.stored_bytes = 0
        self.first_time = 0.0
        self.last_time = 0.0
        # Flight recorder: frames and metadata of the last ring_seconds, and the last
        # value of each channel before them (a dump starts with the state it had).
        self._ring: collections.deque[CapturedFrame] = collections.deque()
        self._ring_meta: collections.deque[tuple[str, Any, float, float]] = collections.deque()
        self._before: dict[str, tuple[str, Any, float, float]] = {}
        self._ring_limit = settings.ring_limit if settings.ring_seconds > 0 else 0
        self._ring_bytes = 0
        #: Frames that left the ring before ring_seconds because of its memory limit,
        #: and the arrival time of the last of them.
        self.n_ring_evicted = 0
        self._last_evicted = 0.0
        self.n_dumps = 0
        self.n_dumped = 0
        self.last_dump = ""
        self._dumps: queue.Queue = queue.Queue()
        self._dump_thread: threading.Thread | None = None
        #: Frame data of queued dumps not written yet: together they get one more
        #: ``ring_limit`` of memory besides the ring; a dump that would go over it
        #: keeps its newest frames (``n_dump_trimmed`` counts the ones left out).
        self._dump_bytes = 0
        self.n_dump_trimmed = 0
        # Frames waiting for the writer thread.
        self._pending: collections.deque[CapturedFrame] = collections.deque()
        self._pending_bytes = 0
        self._pending_cond = threading.Condition()
        self._closing = False
        self._writer: threading.Thread | None = None

    # -- frames -------------------------------------------------------------------

    def add_frame(self, frame: CapturedFrame) -> None:
        """Take one frame to record (or keep it in the ring); returns once it is queued
        for the writer thread (waits while the queue holds ``WRITE_QUEUE_BYTES``).
        Never raises for a write problem: the recording ends instead, with
        ``finished`` saying why."""
        if self.settings.ring_seconds > 0:
            with self._lock:
                self._keep_in_ring(frame)
            return
        cond = self._pending_cond
        with cond:
            if self._writer is None:
                self._writer = threading.Thread(
                    target=self._write_loop, name="recorder-writer", daemon=True
                )
                self._writer.start()
            while self._pending_bytes > WRITE_QUEUE_BYTES and self._writer.is_alive():
                cond.wait(0.1)
            self._pending.append(frame)
            self._pending_bytes += frame.payload.size
            cond.notify_all()

    @property
    def n_queued(self) -> int:
        """Frames taken and not yet written."""
        return len(self._pending)

    def _write_loop(self) -> None:
        cond = self._pending_cond
        while True:
            with cond:
                while not self._pending and not self._closing:
                    cond.wait(0.5)
                if not self._pending:
                    return
                frame = self._pending.popleft()
                self._pending_bytes -= frame.payload.size
                cond.notify_all()
            self._record(frame)

    def _record(self, frame: CapturedFrame) -> None:
        with self._lock:
            if self.finished is None and self._write(frame):
                self.n_recorded += 1
                if self.settings.max_frames and self.n_recorded >= self.settings.max_frames:
                    self._finish(f"frame limit of {self.settings.max_frames} reached")
            else:
                self.n_not_recorded += 1

    def _write(self, frame: CapturedFrame) -> bool:
        s = self.settings
        size = frame.payload.size
        if s.max_bytes and self.stored_bytes + size > s.max_bytes:
            self._finish(f"size limit of {_size(s.max_bytes)} reached")
            return False
        current = self._file
        if current is not None and (
            current.layout != frame.layout
            or (s.file_frames and current.n_frames >= s.file_frames)
            or (s.file_bytes and current.stored_bytes + size > s.file_bytes)
        ):
            if current.layout != frame.layout:
                logger.warning(
                    "frame %d has another shape, type or codec than %s: starting a new file",
                    frame.unique_id,
                    current.path,
                )
            self._close_file()
            if self.finished is not None:
                return False
            current = None
        try:
            if current is None:
                current = self._open_file(frame)
            free = _free_bytes(current.path)
            if free - size < s.reserve_bytes:
                self._finish(
                    f"disk full: {_size(free)} left on the disk of {current.path}; "
                    f"recording stopped before frame {frame.unique_id}",
                    failed=True,
                )
                return False
            self.stored_bytes += current.append(frame)
        except OSError as exc:
            where = current.path if current is not None else s.output_file
            self._finish(f"cannot write {where}: {exc}", failed=True)
            return False
        if not self.first_time:
            self.first_time = frame.arrival
        self.last_time = frame.arrival
        return True

    def _open_file(self, first: CapturedFrame) -> RecordFile:
        path = self._next_path()
        record = RecordFile(path, first, self.settings.channel, self.settings.metadata)
        self._file = record
        self.files.append(path)
        logger.info("recording %s into %s", self.settings.channel, path)
        for update in self._pending_metadata:
            record.add_metadata(*update)
        self._pending_metadata.clear()
        return record

    def _next_path(self) -> str:
        s = self.settings
        while True:
            self._file_number += 1
            if self._file_number == 1 and not s.numbered:
                return s.output_file
            path = numbered_path(s.output_file, self._file_number)
            if not os.path.exists(path):
                return path

    def _close_file(self) -> None:
        record, self._file = self._file, None
        if record is None:
            return
        try:
            record.close()
        except OSError as exc:
            self._finish(f"cannot complete {record.path}: {exc}", failed=True)

    def _finish(self, reason: str, failed: bool = False) -> None:
        if self.finished is None:
            self.finished, self.failed = reason, failed
            (logger.error if failed else logger.info)("recording ended: %s", reason)
        self._close_file()

    # -- metadata and the periodic flush -------------------------------------------

    def add_metadata(self, name: str, value: Any, stamp: float, arrival: float) -> None:
        """Record one metadata update; with a trigger on this channel, dump the ring
        when the condition becomes true."""
        update = (name, value, stamp, arrival)
        with self._lock:
            self.n_metadata += 1
            if self.settings.ring_seconds > 0:
                self._ring_meta.append(update)
                self._trim_ring(arrival)
            elif self._file is not None:
                self._file.add_metadata(*update)
            elif self.finished is None:
                self._pending_metadata.append(update)
            trigger = self.settings.trigger
            if trigger is not None and name == trigger.endpoint.name and trigger.update(value):
                self.dump(f"trigger {trigger.text} (value {value})", now=arrival)

    def tick(self) -> None:
        """Flush the current file if ``flush_period`` passed since the last flush
        (the recording processor's thread calls this a few times a second)."""
        with self._lock:
            now = time.monotonic()
            if now - self._last_flush < self.settings.flush_period:
                return
            self._last_flush = now
            if self._file is not None:
                try:
                    self._file.flush()
                except OSError as exc:
                    self._finish(f"cannot write {self._file.path}: {exc}", failed=True)

    def close(self) -> None:
        """Finish: write the frames still queued and the file's last values, close it;
        wait for dumps being written. Call once, after the last frame."""
        with self._pending_cond:
            self._closing = True
            self._pending_cond.notify_all()
        if self._writer is not None:
            self._writer.join()
        with self._lock:
            self._close_file()
        if self._dump_thread is not None:
            self._dumps.put(None)
            self._dump_thread.join()

    # -- flight recorder --------------------------------------------------------------

    def _keep_in_ring(self, frame: CapturedFrame) -> None:
        ring = self._ring
        ring.append(frame)
        self._ring_bytes += frame.payload.size
        self._trim_ring(frame.arrival)
        if self._ring_bytes > self._ring_limit and len(ring) > 1:
            if not self.n_ring_evicted:
                logger.warning(
                    "flight recorder: %s of memory (--ring-memory) holds %.3g s of this "
                    "stream, not the %g s of --ring; older frames leave it early",
                    _size(self._ring_limit),
                    frame.arrival - ring[0].arrival,
                    self.settings.ring_seconds,
                )
            while self._ring_bytes > self._ring_limit and len(ring) > 1:
                evicted = ring.popleft()
                self._ring_bytes -= evicted.payload.size
                self._last_evicted = evicted.arrival
                self.n_ring_evicted += 1

    def _trim_ring(self, now: float) -> None:
        start = now - self.settings.ring_seconds
        ring = self._ring
        while ring and ring[0].arrival < start:
            self._ring_bytes -= ring.popleft().payload.size
        meta = self._ring_meta
        while meta and meta[0][3] < start:
            update = meta.popleft()
            self._before[update[0]] = update

    def dump(self, reason: str = "dump command", now: float | None = None) -> str:
        """Write the frames (and metadata) of the last ``ring_seconds`` to the next
        numbered file, in the background; return one line saying what is written."""
        s = self.settings
        if s.ring_seconds <= 0:
            return "dump: this recorder has no ring (start it with --ring SECONDS); nothing written"
        with self._lock:
            now = time.time() if now is None else now
            self._trim_ring(now)
            start = now - s.ring_seconds
            frames = [f for f in self._ring if f.arrival >= start]
            if not frames:
                return (
                    f"dump ({reason}): no frame in the last {s.ring_seconds:g} s; nothing written"
                )
            frames, trimmed = self._within_dump_budget(frames)
            meta = list(self._before.values()) + [m for m in self._ring_meta if m[3] >= start]
            path = self._next_path()
            self.n_dumps += 1
            self.last_dump = path
            if self._dump_thread is None:
                self._dump_thread = threading.Thread(
                    target=self._dump_loop, name="ring-dump", daemon=True
                )
                self._dump_thread.start()
            self._dumps.put((path, frames, meta))
        text = (
            f"dump ({reason}): writing {len(frames)} frames, ids {frames[0].unique_id}-"
            f"{frames[-1].unique_id}, of the last {s.ring_seconds:g} s to {path}"
        )
        if trimmed:
            text += (
                f" (only the last {now - frames[0].arrival:.3g} s: {trimmed} older frames "
                f"left out, the dumps still being written hold "
                f"{_size(self._dump_bytes - _bytes(frames))} of the "
                f"--ring-memory {_size(self._ring_limit)} dumps may use)"
            )
        elif self.n_ring_evicted and self._last_evicted >= start:  # the window lost frames
            text += (
                f" (only the last {now - frames[0].arrival:.3g} s: the ring's memory "
                f"limit, --ring-memory {_size(self._ring_limit)}, was reached)"
            )
        return text

    def _within_dump_budget(self, frames: list[CapturedFrame]) -> tuple[list, int]:
        """The newest of ``frames`` that fit beside the dumps not written yet (at least
        one), and how many older ones were left out; with the lock held."""
        room = self._ring_limit - self._dump_bytes
        kept, size = len(frames), 0
        for i in range(len(frames) - 1, -1, -1):
            if size + frames[i].payload.size > room and i < len(frames) - 1:
                kept = len(frames) - 1 - i
                break
            size += frames[i].payload.size
        trimmed = len(frames) - kept
        if trimmed:
            frames = frames[trimmed:]
            self.n_dump_trimmed += trimmed
            logger.warning(
                "flight recorder: a dump while %d earlier one(s) are still being written "
                "keeps only its newest %d frames (%d left out): dumps not written yet may "
                "hold --ring-memory %s besides the ring",
                self._dumps.qsize() + 1,
                kept,
                trimmed,
                _size(self._ring_limit),
            )
        self._dump_bytes += _bytes(frames)
        return frames, trimmed

    def _dump_loop(self) -> None:
        while True:
            job = self._dumps.get()
            if job is None:
                return
            path, frames, meta = job
            try:
                self._write_dump(path, frames, meta)
            except OSError as exc:
                logger.error("dump to %s failed: %s", path, exc)
                with self._lock:
                    self.failed = True

    def _write_dump(self, path: str, frames: list[CapturedFrame], meta: list) -> None:
        s = self.settings
        written = other_layout = 0
        left = _bytes(frames)
        try:
            record = RecordFile(path, frames[0], s.channel, s.metadata)
        except BaseException:
            with self._lock:
                self._dump_bytes -= left
            raise
        try:
            for update in meta:
                record.add_metadata(*update)
            for frame in frames:
                with self._lock:  # this frame's memory no longer counts for the dumps
                    self._dump_bytes -= frame.payload.size
                left -= frame.payload.size
                if frame.layout != record.layout:
                    other_layout += 1  # kept to the first layout; a dump is one file
                    continue
                if _free_bytes(path) - frame.payload.size < s.reserve_bytes:
                    logger.error("disk full: dump to %s stopped after %d frames", path, written)
                    break
                record.append(frame)
                written += 1
        finally:
            record.close()
            with self._lock:
                self._dump_bytes -= left  # frames a full disk or an error kept out
                self.files.append(path)
                self.n_dumped += written
                self.stored_bytes += record.stored_bytes
        if other_layout:
            logger.warning(
                "dump to %s: %d frame(s) left out, their shape, type or codec differs from "
                "the dump's first frame (a dump is one file)",
                path,
                other_layout,
            )
        logger.info("dumped %d frames to %s", written, path)

    # -- statistics -------------------------------------------------------------------

    def stats(self) -> dict:
        """The recorder's numbers (``userStats`` of the stage), any thread."""
        with self._lock:
            current = self._file.path if self._file is not None else ""
            ring = self._ring
            return {
                "nRecorded": self.n_recorded,
                "nNotRecorded": self.n_not_recorded,
                "nQueued": len(self._pending),
                "nMetadata": self.n_metadata,
                "nFiles": len(self.files),
                "storedBytes": self.stored_bytes,
                "currentFile": current or (self.files[-1] if self.files else ""),
                "ringFrames": len(ring),
                "ringBytes": self._ring_bytes,
                "nRingEvicted": self.n_ring_evicted,
                "ringSeconds": (ring[-1].arrival - ring[0].arrival) if len(ring) > 1 else 0.0,
                "nDumps": self.n_dumps,
                "nDumpTrimmed": self.n_dump_trimmed,
                "nDumped": self.n_dumped,
                "lastDump": self.last_dump,
                "finished": self.finished or "",
                "failed": self.failed,
            }


def _bytes(frames: list[CapturedFrame]) -> int:
    return sum(f.payload.size for f in frames)


def _free_bytes(path: str) -> int:
    try:
        st = os.statvfs(os.path.dirname(os.path.abspath(path)))
    except OSError:
        return 1 << 62
    return st.f_bavail * st.f_frsize


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"
