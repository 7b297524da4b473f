"""The collector runtime: several producers' channels → sorting cache → processor (SPEC §3.2)."""

from __future__ import annotations

import logging
from typing import Any

from ..counting import IdTracker
from ..receiver import Receiver
from ..receiver_queue import ReceiverQueue
from ..sorting import SortingCache
from .config import StageConfig
from .stage import Stage

__all__ = ["Collector"]


class Collector(Stage):
    """One collector process's runtime.

    Each producer has its own :class:`~pvhpc.receiver.Receiver` (monitor thread).
    Objects go into one :class:`~pvhpc.sorting.SortingCache`; released objects, in id
    order, are counted (missed ids of the merged stream) and queued for the
    processing thread. On stop the cache is flushed through the processor.
    """

    def __init__(
        self,
        config: StageConfig,
        processor: Any,
        producer_ids: list[int],
        input_channels: list[str],
        cache_size: int,
        gap_timeout: float = 0.0,
        logger: logging.Logger | None = None,
    ):
        if config.receiver_queue_size < 0:
            # The collector always processes in its own thread: producers' monitor
            # threads must never run the processor concurrently.
            config.receiver_queue_size = 0
        super().__init__(
            config, processor, logger or logging.getLogger(f"pvhpc.collector.{config.stage_id}")
        )
        self.producer_ids = producer_ids
        step = config.oid_offset if config.oid_offset > 0 else 1
        self.tracker = IdTracker(step)
        self.cache = SortingCache(
            self._cache_size(cache_size),
            self._on_release,
            step,
            len(producer_ids),
            on_reject=self._on_cache_reject,
            gap_timeout=gap_timeout,
        )
        # Ids released past each producer as missed while it was left out as silent.
        self.missed_while_silent = [0] * len(producer_ids)
        self._silent_seen: dict[int, float] = {}
        self.request = config.monitor_request()
        self.receivers = []
        for index, channel in enumerate(input_channels):
            tracker = IdTracker(1 << 62)  # per-producer order is not ours to judge
            self.receivers.append(
                Receiver(
                    channel,
                    self.request,
                    self._make_deliver(tracker, index),
                    tracker,
                    config.oid_field,
                    config.skip_initial_updates,
                    logger=self.logger,
                    distributor=config.distributor,
                    on_fatal=self.fail,
                )
            )
        self._last_tracked: int | None = None

    def _cache_size(self, size: int) -> int:
        return max(int(size), len(self.producer_ids))

    def _make_deliver(self, tracker: IdTracker, index: int):
        add = self.cache.add

        def deliver(pv: Any, oid: int) -> None:
            # The cache keeps a copy: pvaccess reuses the callback's object for the
            # next update.
            add(pv.copy(), oid, index)

        return deliver

    def _on_release(self, pv: Any, oid: int) -> None:
        # With the cache lock held, in id order: count the merged stream, then queue.
        if oid != self._last_tracked:
            self._last_tracked = oid
            if self.cache.silent:
                before = self.tracker.n_missed
                self.tracker.update(oid)
                gap = self.tracker.n_missed - before
                for i in self.cache.silent:
                    self.missed_while_silent[i] += gap
            else:
                self.tracker.update(oid)
        queue: ReceiverQueue = self.queue  # type: ignore[assignment]
        if not queue.put((oid, pv)) and self.id_runs is not None:
            self.id_runs["rejected"].add(oid)

    def _on_cache_reject(self, oid: int) -> None:
        if self.id_runs is not None:
            self.id_runs["rejected"].add(oid)

    IDLE_RELEASE = 1.0

    def on_tick(self) -> None:
        for r in self.receivers:
            r.supervise()
        self.cache.release_idle(self.IDLE_RELEASE)
        self.cache.leave_out_silent()
        self._tell_silence()

    def _tell_silence(self) -> None:
        """One line when a producer is left out as silent, one when it is back."""
        now_silent = dict(self.cache.silent)
        for i in now_silent:
            if i not in self._silent_seen:
                self.logger.warning(
                    "producer %s (%s) sent nothing for %g s while the others did; "
                    "releasing without waiting for it, its ids count as missed "
                    "(--collector-gap-timeout)",
                    self.producer_ids[i],
                    self.receivers[i].channel_name,
                    self.cache.gap_timeout,
                )
        for i in self._silent_seen:
            if i not in now_silent:
                self.logger.warning(
                    "producer %s (%s) is sending again; %d id(s) were released past it "
                    "as missed while it was silent",
                    self.producer_ids[i],
                    self.receivers[i].channel_name,
                    self.missed_while_silent[i],
                )
        self._silent_seen = now_silent

    def start(self) -> None:
        self.setup_processor(self.receivers[0].sample)
        if self.publisher.guessed:
            self.receivers[0].first_update = self.learn_output_type
        self.start_common()
        self.logger.info(
            "collector %s: producers %s, cache size %d",
            self.config.stage_id,
            self.producer_ids,
            self.cache.size,
        )
        for r in self.receivers:
            r.start()

    def run(self) -> int:
        self.start()
        try:
            self.run_loop()
        finally:
            for r in self.receivers:
                r.stop()
                if not self.exit_status:
                    r.say_if_never_connected()
            self.cache.flush()
            self.stop_processing()
            self.report(final=True)
            self.server.stop()
        return self.exit_status

    def stats(self) -> dict:
        t = self.tracker
        proc = self.processing_stats(t.n_missed, t.first, t.last)
        base = proc["receivingTime"] or None
        rs = self.receivers
        n_received = sum(r.n_received for r in rs)
        n_overruns = sum(r.n_overruns for r in rs)
        n_errors = sum(r.n_errors for r in rs)
        q = self.queue
        n_rejected = self.cache.n_rejected + (q.n_rejected if q is not None else 0)
        producers = {
            f"producer{pid}": {
                "channel": r.channel_name,
                "nReceived": r.n_received,
                "nOverruns": r.n_overruns,
                "nErrors": r.n_errors,
                "nSkipped": r.n_skipped,
                "nConnects": r.n_connects,
                "connected": r.connected,
                "lastObjectId": r.tracker.last if r.tracker.last is not None else -1,
                "silent": i in self.cache.silent,
                "nMissedWhileSilent": self.missed_while_silent[i],
            }
            for i, (pid, r) in enumerate(zip(self.producer_ids, rs, strict=True))
        }
        return {
            "inputChannel": ",".join(r.channel_name for r in rs),
            "receiverStats": {
                "nReceived": n_received,
                "nOverruns": n_overruns,
                "nRejected": n_rejected,
                "nErrors": n_errors,
                "nSkipped": sum(r.n_skipped for r in rs),
                "nRestarts": t.n_restarts,
                "receivedRate": n_received / base if base else 0.0,
                "overrunRate": n_overruns / base if base else 0.0,
                "rejectedRate": n_rejected / base if base else 0.0,
                "errorRate": n_errors / base if base else 0.0,
            },
            "collectorStats": {
                "cacheSize": self.cache.size,
                "nCached": len(self.cache),
                "maxCached": self.cache.max_held,
                "nCollected": self.cache.n_released,
                "nRejected": self.cache.n_rejected,
                "nDuplicates": self.cache.n_duplicates,
                "gapTimeout": self.cache.gap_timeout,
                "lastReleasedId": (
                    self.cache.last_released if self.cache.last_released is not None else -1
                ),
            },
            "producerStats": producers,
            "queueStats": self.queue_stats(),
            "processorStats": proc,
            "publisherStats": self.publisher_stats(base or 0.0),
            "metadataStats": self.metadata_stats(),
            "userStats": self.user_stats(),
            "restartStats": self.restart_stats(),
            "pid": self.pid,
        }

    def reset_stats(self) -> None:
        for r in self.receivers:
            r.reset_stats()
        self.cache.reset_stats()
        self.missed_while_silent = [0] * len(self.producer_ids)
        self._silent_seen = {}
        self.tracker.reset()
        self._last_tracked = None
        super().reset_stats()

    RUNTIME_KEYS = {**Stage.RUNTIME_KEYS, "collectorCacheSize": None}

    def configure_runtime(self, config: dict) -> list[str]:
        changed = super().configure_runtime(config)
        if "collectorCacheSize" in config:
            size = int(config["collectorCacheSize"])
            self.cache.resize(self._cache_size(size))
            changed.append(f"collectorCacheSize={self.cache.size}")
        if "skipInitialUpdates" in config:
            for r in self.receivers:
                r.set_skip_initial(int(config["skipInitialUpdates"]))
            changed.append(f"skipInitialUpdates={int(config['skipInitialUpdates'])}")
        if "objectIdOffset" in config:
            offset = int(config["objectIdOffset"])
            if offset <= 0:
                raise ValueError(f"objectIdOffset must be a positive integer, got {offset}")
            self.tracker.configure(offset)
            self.cache.step = offset
            changed.append(f"objectIdOffset={offset}")
        return changed
