"""The consumer runtime: one input channel → processor → output channel (SPEC §3.1)."""

from __future__ import annotations

import logging
import time
from typing import Any

from ..counting import IdTracker, expected_offset
from ..receiver import Receiver
from .config import StageConfig
from .stage import Stage

__all__ = ["Consumer"]


class Consumer(Stage):
    """One consumer process's runtime.

    Built in the main thread; :meth:`start` returns once the monitor is set up (it
    connects whenever the source appears); :meth:`run` blocks until stopped and
    returns the exit status.
    """

    def __init__(self, config: StageConfig, processor: Any, logger: logging.Logger | None = None):
        super().__init__(
            config, processor, logger or logging.getLogger(f"pvhpc.consumer.{config.stage_id}")
        )
        offset = expected_offset(
            config.oid_offset,
            config.n_consumers,
            config.distributor_updates,
            config.n_distributor_sets,
        )
        self.tracker = IdTracker(offset, self._run_length())
        #: The source's id when the consumer stopped (read then), or None.
        self.source_last_id: int | None = None
        #: (id, trigger field) of the first objects received, with the distributor.
        self._trigger_samples: list[tuple] = []
        self.request = config.monitor_request(config.input_channel)
        if self.queue is not None:
            put = self.queue.put
            tracker = self.tracker

            def deliver(pv: Any, oid: int) -> None:
                # pvaccess reuses the callback's object for the next update: a queued
                # object must be a copy (structure only; the pixel buffer is shared).
                if not put((oid, pv.copy())) and self.id_runs is not None:
                    rejected = self.id_runs["rejected"]
                    rejected.epoch = tracker.n_restarts
                    rejected.add(oid)
        else:
            deliver = self.process_one
        self.receiver = Receiver(
            config.input_channel,
            self.request,
            deliver,
            self.tracker,
            config.oid_field,
            config.skip_initial_updates,
            logger=self.logger,
            distributor=config.distributor,
            on_fatal=self.fail,
        )

    def id_pattern(self) -> dict | None:
        return self.tracker.pattern()

    def _run_length(self) -> int:
        cfg = self.config
        shared = cfg.n_consumers > 1 or cfg.n_distributor_sets > 1 or cfg.oid_offset > 0
        return cfg.distributor_updates if cfg.distributor_updates and shared else 1

    def start(self) -> None:
        self.setup_processor(self.receiver.sample)
        if self.publisher.guessed:
            self.receiver.first_update = self.learn_output_type
        if self.config.distributor:
            self._watch_trigger()
        self.start_common()
        self.logger.info(
            "consumer %s: monitoring %s with request %s (expected id offset %d)",
            self.config.stage_id,
            self.config.input_channel,
            self.request,
            self.tracker.offset,
        )
        self.receiver.start()

    def _trigger_field(self) -> str:
        return self.config.distributor_trigger or "timeStamp"

    def _watch_trigger(self) -> None:
        """Keep the id and trigger field of the first two objects the monitor sends
        (the source's current one, then the first frame it hands on), in the monitor
        thread, to tell at stop whether the source changes its trigger field from
        frame to frame (see :meth:`_trigger_remark`)."""
        then = self.receiver.first_update
        trigger, oid_field = self._trigger_field(), self.config.oid_field
        samples = self._trigger_samples

        def keep(pv: Any) -> None:
            try:
                samples.append((pv[oid_field], pv[trigger]))
            except Exception:  # noqa: BLE001 - no such field: nothing to compare
                pass

        def first(pv: Any) -> None:
            keep(pv)
            self.receiver.first_update = keep
            if then is not None:
                then(pv)

        self.receiver.first_update = first

    def _trigger_remark(self) -> str:
        """With the distributor: why frames never arrived, if the source's trigger field
        did not change while its id did (the plugin then hands on only the first)."""
        if not self._trigger_samples:
            return ""
        trigger = self._trigger_field()
        now = self.receiver.source_fields(f"{self.config.oid_field},{trigger}")
        if now is None:
            return ""
        try:
            oid, value = now[self.config.oid_field], now[trigger]
        except Exception:  # noqa: BLE001 - a source re-created with another structure
            return ""
        same = [i for i, v in self._trigger_samples if v == value and i != oid]
        if not same:
            return ""
        first_id = same[0]
        return (
            f". The source's {trigger} did not change from id {first_id} to id {oid}: "
            f"the distributor tells frames apart by it and passes on only the first of "
            f"frames with equal {trigger}s. Have the source set a new {trigger} on every "
            f"frame, or give -dt {self.config.oid_field}"
        )

    def on_tick(self) -> None:
        self.receiver.supervise()

    def run(self) -> int:
        """Run until stopped; drain, stop the processor, report; return the exit status."""
        self.start()
        try:
            self.run_loop()
        finally:
            self._stop_receiving()
            if not self.exit_status:
                self.receiver.say_if_never_connected()
            self.stop_processing()
            self.report(final=True)
            self.server.stop()
        self.logger.info("consumer %s stopped: %s", self.config.stage_id, self.stop_reason)
        return self.exit_status

    def _stop_receiving(self, grace: float = 2.0) -> None:
        """Stop the monitor with the stream accounted for up to the source's current id.

        A monitor that fell behind can be left without the source's last updates and
        never be told. So: read the source's current id, give frames still in flight
        ``grace`` seconds to arrive, stop, and count those that did not as missed.
        """
        target = self.receiver.source_id() if self.tracker.last is not None else None
        self.source_last_id = target
        if target is not None:
            deadline = time.monotonic() + grace
            while self.tracker.pending(target) and time.monotonic() < deadline:
                time.sleep(0.02)
        self.receiver.stop()
        if target is not None:
            lost = self.tracker.count_missed_until(target)
            if lost:
                remark = self._trigger_remark() if self.config.distributor else ""
                self.logger.warning(
                    "%d frame(s) up to id %d, published by %s, never arrived; counted as missed%s",
                    lost,
                    target,
                    self.config.input_channel,
                    remark or " (a server queue, -sqs, protects against this)",
                )

    def stats(self) -> dict:
        r = self.receiver
        t = self.tracker
        proc = self.processing_stats(t.n_missed, t.first, t.last)
        proc["sourceLastId"] = self.source_last_id if self.source_last_id is not None else -1
        base = proc["receivingTime"] or None
        n_rejected = self.queue.n_rejected if self.queue is not None else 0
        return {
            "inputChannel": self.config.input_channel,
            "receiverStats": {
                "nReceived": r.n_received,
                "nOverruns": r.n_overruns,
                "nRejected": n_rejected,
                "nErrors": r.n_errors,
                "nSkipped": r.n_skipped,
                "nRestarts": t.n_restarts,
                "nConnects": r.n_connects,
                "connected": r.connected,
                "receivedRate": r.n_received / base if base else 0.0,
                "overrunRate": r.n_overruns / base if base else 0.0,
                "rejectedRate": n_rejected / base if base else 0.0,
                "errorRate": r.n_errors / base if base else 0.0,
            },
            "queueStats": self.queue_stats(),
            "processorStats": proc,
            "publisherStats": self.publisher_stats(base or 0.0),
            "metadataStats": self.metadata_stats(),
            "userStats": self.user_stats(),
            "restartStats": self.restart_stats(),
            "pid": self.pid,
        }

    def reset_stats(self) -> None:
        self.receiver.reset_stats()
        super().reset_stats()

    def configure_runtime(self, config: dict) -> list[str]:
        changed = super().configure_runtime(config)
        if "skipInitialUpdates" in config:
            self.receiver.set_skip_initial(int(config["skipInitialUpdates"]))
            changed.append(f"skipInitialUpdates={self.receiver.skip_initial}")
        if "objectIdOffset" in config:
            offset = int(config["objectIdOffset"])
            if offset <= 0:
                raise ValueError(f"objectIdOffset must be a positive integer, got {offset}")
            self.tracker.configure(offset, self.tracker.run)
            changed.append(f"objectIdOffset={offset}")
        return changed
