"""What consumers and collectors share: the processor wrapper, statistics snapshots
and the run loop.

A *stage* is one consumer or collector process. :class:`Stage` holds its processor
and server and answers control commands (:mod:`~pvhpc.runtime.control`); subclasses
(:class:`~pvhpc.runtime.consumer.Consumer`, :class:`~pvhpc.runtime.collector.Collector`)
add their receive path.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import pvaccess as pva

from ..channels import DataPublisher, StageServer, blank_of, pva_type_for
from ..counting import IdRuns
from ..errors import ProcessorError
from ..processor import UserDataProcessor
from ..receiver_queue import ReceiverQueue
from .config import StageConfig
from .control import ControlCommands
from .metadata import MetadataChannel, field_key

__all__ = ["Stage"]

LATENCY_SAMPLES = 4096
# Reading a frame's timestamp costs more than all other per-frame bookkeeping
# together (measured: 8 µs of 52 µs per frame at 5 kHz, 128x128, passthrough), so
# fast streams are sampled: every k-th frame, k set each tick for about this many
# samples per second (every frame below that rate).
LATENCY_SAMPLES_PER_SECOND = 200


class Stage(ControlCommands):
    """One consumer or collector: processor, server, metadata, control, run loop.

    Threads: the monitor thread(s) deliver objects; with a receiver queue a
    processing thread calls the processor; the control thread runs commands; the
    main thread runs :meth:`run` (reports, runtime, stop).
    """

    def __init__(self, config: StageConfig, processor: Any, logger: logging.Logger):
        self.config = config
        self.processor = processor
        #: What process_one calls per frame (see setup_processor).
        self._process: Callable[[Any], Any] = processor.process
        self.logger = logger
        self.id_name = f"{config.kind}Id"
        self.server = StageServer(
            self.id_name, config.stage_id, logger, config.access_security_file
        )
        self.publisher = DataPublisher(self.server, config.output_channel, logger)
        self.stop_event = threading.Event()
        #: Set once the receivers stopped: the processing thread drains and ends. Not
        #: stop_event, which is set first: frames still arrive while the receivers
        #: stop (a consumer waits for what the source published), and go to the queue.
        self._receiving_ended = threading.Event()
        self.stop_reason = ""
        self.metadata = [
            MetadataChannel(
                m.protocol,
                m.name,
                max(config.receiver_queue_size, 0) or 100000,
                config.server_queue_size,
            )
            for m in config.metadata_channels
        ]
        self.queue: ReceiverQueue | None = None
        if config.receiver_queue_size >= 0:
            self.queue = ReceiverQueue(
                config.receiver_queue_size, config.accumulate_objects, config.accumulation_timeout
            )
        self._processing_thread: threading.Thread | None = None
        self._reset_processing_stats()
        self.start_time = time.time()
        self.end_time = 0.0
        self.report_sink: Callable[[dict], None] | None = None
        self.exit_status = 0
        #: This stage's process (in the status: which process to look at).
        self.pid = os.getpid()
        #: One line saying why the stage cannot work as asked (exit status 2).
        self.fatal_error: str | None = None
        #: Told that line, instead of it being printed (a child process's parent).
        self.fatal_sink: Callable[[str], None] | None = None
        #: Under a supervising parent: told every PROGRESS_PERIOD seconds what this
        #: stage has done (see :meth:`progress`), so that the parent can account for
        #: the frames of a stage that dies. None: not tracked (no per-frame cost).
        self.progress_sink: Callable[[dict], None] | None = None
        #: Set by the ``restart`` control command: exit so the parent starts it again.
        self.restart_requested = False
        #: Ids processed, failed and rejected (IdRuns), while progress is reported.
        self.id_runs: dict[str, IdRuns] | None = None

    # -- processing (hot path) ------------------------------------------------

    def _reset_processing_stats(self) -> None:
        self.n_processed = 0
        self.n_process_errors = 0
        self.first_object_time = 0.0
        self.last_object_time = 0.0
        self.latencies: collections.deque = collections.deque(maxlen=LATENCY_SAMPLES)
        self._last_error_log = 0.0
        self._stamp = None
        self._latency_every = self._latency_countdown = 1
        self._latency_rate_n, self._latency_rate_t = 0, time.monotonic()

    def process_one(self, pv: Any, oid: int) -> None:
        """Run the processor on object ``oid`` and count the outcome (processing thread)."""
        if oid < self._last_oid and self.id_runs is not None:
            self._new_epoch()
        self._last_oid = oid
        try:
            self._process(pv)
        except Exception as exc:  # noqa: BLE001 - user code; counted, the stream goes on
            self.n_process_errors += 1
            if self.id_runs is not None:
                self.id_runs["errors"].add(oid)
            now = time.monotonic()
            if now - self._last_error_log > 5:
                self._last_error_log = now
                self.logger.error(
                    "processor failed on an object from %s: %s: %s "
                    "(counted in processorStats.nErrors)",
                    self.config.input_channel,
                    type(exc).__name__,
                    exc,
                    exc_info=self.logger.isEnabledFor(logging.DEBUG),
                )
            return
        now = time.time()
        if not self.n_processed:
            self.first_object_time = now
        self.n_processed += 1
        runs = self.id_runs
        if runs is not None:
            runs["processed"].add(oid)
        self.last_object_time = now
        countdown = self._latency_countdown - 1
        if countdown > 0:
            self._latency_countdown = countdown
            return
        self._latency_countdown = self._latency_every
        stamp = self._stamp
        if stamp is None:
            stamp = self._stamp = _timestamp_reader(pv)
        if stamp is not False:
            try:
                sent = stamp(pv)
            except Exception:  # noqa: BLE001 - a stream without timestamps
                self._stamp = False
            else:
                if sent > 0:  # 0: a source that leaves timeStamp unset
                    self.latencies.append(now - sent)

    def _processing_loop(self) -> None:
        queue = self.queue
        assert queue is not None
        process = self.process_one
        while not self._receiving_ended.is_set():
            for oid, pv in queue.get_batch(0.2):
                process(pv, oid)

    # -- lifecycle ----------------------------------------------------------------

    def setup_processor(self, sample_input: Callable[[], Any] | None = None) -> None:
        """Give the processor its runtime attributes and create the output channel.

        The output record gets the type the processor declares for its output. A
        processor whose output type is its input's (the passthrough, and any that does
        not override ``getOutputPvObjectType``) gets the type of the input's current
        object when ``sample_input`` can read one now, else an NTNDArray; if the first
        object the monitor brings has another structure, the record is made again for
        it, before anything was published on it (see :meth:`learn_output_type`).
        """
        cfg = self.config
        p = self.processor
        p.logger = logging.getLogger(f"pvhpc.processor.{cfg.kind}{cfg.stage_id}")
        p.processorId = cfg.stage_id
        p.inputChannel = cfg.input_channel
        p.outputChannel = cfg.output_channel
        p.objectIdField = cfg.oid_field
        p.pvaServer = self.server.pva_server
        p.dataPublisher = self.publisher
        p.metadataQueueMap = {m.name: m.queue for m in self.metadata}
        self._process = _passthrough_shortcut(p, self.publisher)
        if not cfg.output_channel:
            return
        declared = self._call_processor("getInputPvObjectType")
        probe = declared if declared is not None else pva.NtNdArray()
        out_type = self._call_processor("getOutputPvObjectType", probe)
        guessed = declared is None and (out_type is probe or out_type is None)
        if guessed and sample_input is not None:
            sample = sample_input()
            if sample is not None:
                typed = self._call_processor("getOutputPvObjectType", sample)
                # The input's type, not its current frame: the record starts empty.
                out_type = blank_of(sample) if typed is None or typed is sample else typed
                guessed = False
        if out_type is not None:
            self.publisher.create(out_type, guessed=guessed)

    def _call_processor(self, method: str, *args: Any) -> Any:
        """A type method of the processor, or None if it raised (logged at debug)."""
        try:
            return getattr(self.processor, method)(*args)
        except Exception as exc:  # noqa: BLE001 - user code; the record is made later
            self.logger.debug("processor %s() failed: %s", method, exc)
            return None

    def learn_output_type(self, pv: Any) -> None:
        """With the first object from the input (monitor thread, before it is counted):
        make the output record again if the output type was a guess and this object's
        type differs (see :meth:`DataPublisher.retype`)."""
        if self.publisher.guessed:
            out_type = self._call_processor("getOutputPvObjectType", pv)
            self.publisher.retype(out_type if out_type is not None else pv)

    def start_common(self) -> None:
        """Start metadata monitors, the processor, the status and control channels and
        the processing thread.

        The status and control channels come up only once the processor's start()
        returned: a status that answers means the stage is ready (``pvhpc run`` and
        the tests wait on it), and configure() is never called before start().
        """
        for m in self.metadata:
            m.start()
        try:
            self.processor.start()
        except Exception as exc:  # noqa: BLE001 - user code: one clear line, then exit
            raise ProcessorError(f"processor start() failed: {type(exc).__name__}: {exc}") from exc
        self.server.setup_control(self.config.control_channel, self.handle_command)
        self.server.setup_status(
            self.config.status_channel, self.stats(), {"userStats": self._user_stats_types()}
        )
        if self.queue is not None:
            self._processing_thread = threading.Thread(
                target=self._processing_loop, name="processing", daemon=True
            )
            self._processing_thread.start()

    def stop_processing(self) -> None:
        """After the receivers stopped: drain the queue, stop the processor."""
        self.stop_event.set()
        self._receiving_ended.set()
        if self.queue is not None:
            self.queue.wake()
        if self._processing_thread is not None:
            self._processing_thread.join()
            # Everything received is processed before the processor stops: drained
            # here, after the thread ended, so that a frame a monitor callback still
            # queued while the receivers stopped is not left behind.
            assert self.queue is not None
            for oid, pv in self.queue.get_batch(0, drain=True):
                self.process_one(pv, oid)
        for m in self.metadata:
            m.stop()
            if not self.exit_status:
                m.say_if_never_answered(self.logger)
        try:
            self.processor.stop()
        except Exception as exc:  # noqa: BLE001 - user code at shutdown: log, go on
            self.logger.error("processor stop() failed: %s: %s", type(exc).__name__, exc)
            self.exit_status = self.exit_status or 1
        self.end_time = time.time()

    def fail(self, message: str) -> None:
        """The stage cannot work as its options ask (main thread): stop with exit
        status 2; ``message`` is the one line the command prints."""
        self.fatal_error = message
        self.exit_status = 2
        if self.fatal_sink is not None:
            self.fatal_sink(message)
        self.request_stop(message)

    def request_stop(self, reason: str) -> None:
        """Ask the run loop to stop (any thread, signal handlers included)."""
        if not self.stop_event.is_set():
            self.stop_reason = reason
        self.stop_event.set()

    def run_loop(self) -> None:
        """Main thread: report periodically until stopped or the runtime is over."""
        cfg = self.config
        deadline = time.monotonic() + cfg.runtime if cfg.runtime > 0 else None
        period = cfg.report_period if cfg.report_period > 0 else None
        next_report = time.monotonic() + period if period else None
        next_progress = time.monotonic()
        while not self.stop_event.is_set():
            now = time.monotonic()
            waits = [t - now for t in (deadline, next_report) if t is not None]
            self.stop_event.wait(max(0.0, min([*waits, self.TICK])))
            self._adapt_latency_sampling()
            self.on_tick()
            now = time.monotonic()
            for m in self.metadata:
                m.watch(now, self.logger)
            if deadline is not None and now >= deadline and not self.stop_event.is_set():
                self.request_stop(f"runtime of {cfg.runtime:g} s reached")
            if next_report is not None and now >= next_report and not self.stop_event.is_set():
                next_report += period
                self.report()
            if self.progress_sink is not None and now >= next_progress:
                next_progress = now + self.PROGRESS_PERIOD
                self.progress_sink(self.progress())

    TICK = 0.25
    PROGRESS_PERIOD = 0.25  # what a dead child took unreported: a quarter second at most

    _last_oid = -1

    def _new_epoch(self) -> None:
        # An id below the last one processed: the source restarted (counting.py).
        runs = self.id_runs
        runs["processed"].epoch += 1  # type: ignore[index]
        runs["errors"].epoch += 1  # type: ignore[index]

    def track_progress(self, sink: Callable[[dict], None]) -> None:
        """Report progress to ``sink`` from now on (before :meth:`run`, main thread)."""
        self.id_runs = {"processed": IdRuns(), "errors": IdRuns(), "rejected": IdRuns()}
        self.progress_sink = sink

    def progress(self, final: bool = False) -> dict:
        """What this stage did since the last call: its statistics, and the ids it
        processed, failed on and rejected since then, as runs (main thread)."""
        runs = self.id_runs or {}
        return {
            "progress": True,
            "final": final,
            self.id_name: self.config.stage_id,
            "stats": self.stats(),
            "ids": {name: r.take() for name, r in runs.items()},
            "pattern": self.id_pattern(),
        }

    def id_pattern(self) -> dict | None:
        """Where this stage's ids lie in the stream (see :meth:`IdTracker.pattern`)."""
        return None

    def _adapt_latency_sampling(self) -> None:
        # Main thread, every tick: the processing rate since the last tick sets k.
        now, n = time.monotonic(), self.n_processed
        elapsed = now - self._latency_rate_t
        if elapsed > 0:
            rate = (n - self._latency_rate_n) / elapsed
            self._latency_every = max(1, int(rate / LATENCY_SAMPLES_PER_SECOND))
        self._latency_rate_n, self._latency_rate_t = n, now

    def on_tick(self) -> None:
        """Called by the run loop every ``TICK`` seconds or less (main thread)."""

    def report(self, final: bool = False) -> dict:
        """Publish the status and hand a snapshot to the report sink (main thread)."""
        snapshot = self.stats()
        self.server.publish_status(snapshot)
        if self.report_sink is not None:
            snapshot = dict(snapshot, final=final, **{self.id_name: self.config.stage_id})
            self.report_sink(snapshot)
        if final and self.progress_sink is not None:
            self.progress_sink(self.progress(final=True))
        return snapshot

    # -- statistics ------------------------------------------------------------------

    def _user_stats_types(self) -> dict:
        try:
            types = dict(self.processor.getStatsPvaTypes() or {})
        except Exception as exc:  # noqa: BLE001
            self.logger.error("processor getStatsPvaTypes() failed: %s", exc)
            types = {}
        try:
            sample = dict(self.processor.getStats() or {})
        except Exception:  # noqa: BLE001
            sample = {}
        for key, value in sample.items():
            types.setdefault(key, pva_type_for(value))
        return {k: v for k, v in types.items() if k.isidentifier()}

    def user_stats(self) -> dict:
        try:
            return dict(self.processor.getStats() or {})
        except Exception as exc:  # noqa: BLE001
            self.logger.error("processor getStats() failed: %s", exc)
            return {}

    def processing_stats(self, n_missed: int, first_id: Any, last_id: Any) -> dict:
        now = time.time()
        end = self.end_time or now
        receiving = max(self.last_object_time - self.first_object_time, 0.0)
        rate_base = receiving if receiving > 0 else None
        runtime = end - self.start_time
        lat = sorted(self.latencies)
        return {
            "nProcessed": self.n_processed,
            "nMissed": n_missed,
            "nErrors": self.n_process_errors,
            "firstObjectId": first_id if first_id is not None else -1,
            "lastObjectId": last_id if last_id is not None else -1,
            "firstObjectTime": self.first_object_time,
            "lastObjectTime": self.last_object_time,
            "receivingTime": receiving,
            "runtime": runtime,
            "startTime": self.start_time,
            "endTime": self.end_time,
            "processedRate": self.n_processed / rate_base if rate_base else 0.0,
            "missedRate": n_missed / rate_base if rate_base else 0.0,
            "errorRate": self.n_process_errors / rate_base if rate_base else 0.0,
            "latencyP50": lat[len(lat) // 2] if lat else 0.0,
            "latencyP99": lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else 0.0,
        }

    def queue_stats(self) -> dict:
        q = self.queue
        if q is None:
            return {"nReceived": 0, "nRejected": 0, "nDelivered": 0, "nQueued": 0, "maxLength": -1}
        return {
            "nReceived": q.n_received,
            "nRejected": q.n_rejected,
            "nDelivered": q.n_delivered,
            "nQueued": q.n_queued,
            "maxLength": q.max_length,
        }

    def publisher_stats(self, rate_base: float) -> dict:
        n = self.publisher.n_published
        return {
            "nPublished": n,
            "publishedRate": n / rate_base if rate_base else 0.0,
            "nErrors": self.publisher.n_errors,
            "nConverted": self.publisher.n_converted,
            "nReplaced": self.publisher.n_replaced,
        }

    def restart_stats(self) -> dict:
        """How often this stage was started again after dying (``--restart-failed``)."""
        return {
            "nRestarts": self.config.restart_count,
            "backoff": self.config.restart_backoff,
        }

    def metadata_stats(self) -> dict:
        return {field_key(m.name): m.stats() for m in self.metadata}

    def stats(self) -> dict:  # pragma: no cover - implemented by subclasses
        raise NotImplementedError

    def reset_stats(self) -> None:
        self._reset_processing_stats()
        self.start_time = time.time()
        self.publisher.reset_stats()
        if self.queue is not None:
            self.queue.reset_stats()
        for m in self.metadata:
            m.queue.resetCounters()
        try:
            self.processor.resetStats()
        except Exception as exc:  # noqa: BLE001
            self.logger.error("processor resetStats() failed: %s", exc)


def _passthrough_shortcut(processor: Any, publisher: DataPublisher) -> Callable[[Any], Any]:
    """What to call per frame: the processor's ``process``, or, for the built-in
    passthrough as it is (nothing overridden), the publisher directly (two Python
    calls less per frame; the same effect)."""
    base = UserDataProcessor
    cls = type(processor)
    untouched = (
        cls.process is base.process
        and cls.updateOutputChannel is base.updateOutputChannel
        and "process" not in vars(processor)
        and "updateOutputChannel" not in vars(processor)
        and processor.dataPublisher is publisher
    )
    return publisher.updateOutputChannel if untouched else processor.process


def _timestamp_reader(pv: Any):
    """A function reading ``timeStamp`` as float seconds, or False if there is none."""
    try:
        intro = pv.getIntrospectionDict()
        if "timeStamp" not in intro:
            return False
        cls = type(pv)
        get_long, get_int = cls.getLong, cls.getInt
        return lambda obj: (
            get_long(obj, "timeStamp.secondsPastEpoch")
            + get_int(obj, "timeStamp.nanoseconds") * 1e-9
        )
    except Exception:  # noqa: BLE001
        return False
