"""Example processor: attach metadata (positions, temperatures...) to frames by timestamp.

Run it with ``--metadata-channels pva://x,pva://y,ca://z``: the runtime monitors
those channels and puts every update in ``self.metadataQueueMap[name]`` (a
``pvaccess.PvObjectQueue``; ``name`` without ``pva://``/``ca://``). Each update is
expected to be ``{double value, time_t timeStamp}`` — what the simulator's
``-mpv`` channels and CA records both deliver.

For every frame, and every metadata channel, the value whose timestamp (plus
``metadataTimestampOffset``) is closest to the frame's time, within
``timestampTolerance``, is attached to the frame as an NTAttribute named after the
channel (its ``timeStamp`` is the metadata's, its ``source`` the channel name). The
frame's time is its ``dataTimeStamp`` (when the detector took it), or its
``timeStamp`` if ``dataTimeStamp`` is zero.

Values too old for the frame being processed can never match a later frame either
(frames arrive in time order): they are discarded and counted. Values newer than the
frame wait for the next frames. If several consumers share the frames (distributor),
each receives every metadata update and discards those of the other consumers'
frames — that shows in ``nMetadataDiscarded``.

Configuration (``--processor-args``, or ``configure`` at runtime):
``timestampTolerance`` seconds [0.001]; ``metadataTimestampOffset`` seconds, added
to every metadata timestamp before comparing [0].
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any

import pvaccess as pva

from pvhpc.processors.ad_image import AdImageProcessor, get_data_timestamp, get_timestamp


def _seconds(ts: Any) -> float:
    if not ts:
        return 0.0
    return float(ts.get("secondsPastEpoch", 0)) + float(ts.get("nanoseconds", 0)) * 1e-9


def _pv_value(value: Any) -> Any:
    if isinstance(value, bool):
        return pva.PvBoolean(value)
    if isinstance(value, int):
        return pva.PvLong(value)
    if isinstance(value, float):
        return pva.PvDouble(value)
    return pva.PvString(str(value))


class HpcAdMetadataProcessor(AdImageProcessor):
    """Attach matching metadata values to each frame and publish the frame.

    ``process`` runs in the runtime's processing thread and never blocks: it takes
    what is in the metadata queues now. ``configure`` may be called from the control
    thread at any time. The published object is the input frame itself with the
    metadata attributes appended (its ``timeStamp`` is kept: it is the frame's own).
    """

    def __init__(self, configDict: dict | None = None) -> None:
        super().__init__(configDict)
        self.timestampTolerance = float(self.configDict.get("timestampTolerance", 0.001))
        self.metadataTimestampOffset = float(self.configDict.get("metadataTimestampOffset", 0))
        if self.timestampTolerance < 0:
            raise ValueError(f"timestampTolerance must be >= 0, got {self.timestampTolerance}")
        # Per channel: values taken from the queue but not yet matched or discarded,
        # oldest first, as (metadata time in seconds, value, timeStamp dict). The
        # offset is applied when comparing, so that changing it applies to these too.
        self._pending: dict[str, deque] = {}
        self._lock = threading.Lock()
        self.resetStats()

    def configure(self, configDict: dict) -> None:
        """Apply ``timestampTolerance`` and ``metadataTimestampOffset`` from the next frame on."""
        if "timestampTolerance" in configDict:
            tolerance = float(configDict["timestampTolerance"])
            if tolerance < 0:
                raise ValueError(f"timestampTolerance must be >= 0, got {tolerance}")
            self.timestampTolerance = tolerance
        if "metadataTimestampOffset" in configDict:
            self.metadataTimestampOffset = float(configDict["metadataTimestampOffset"])

    def start(self) -> None:
        """Reset statistics; log the channels and the tolerance."""
        self.resetStats()
        self.logger.info(
            "Associating metadata from %s within %g s (offset %g s)",
            ", ".join(self.metadataQueueMap) or "no channels",
            self.timestampTolerance,
            self.metadataTimestampOffset,
        )

    def _take(self, name: str, queue: Any, newest_needed: float) -> deque:
        """Move values from ``queue`` to the pending list until one is newer than needed.

        ``newest_needed`` is in metadata time (the offset not applied).
        """
        pending = self._pending.setdefault(name, deque())
        while not pending or pending[-1][0] <= newest_needed:
            try:
                item = queue.get(0)
            except pva.QueueEmpty:
                break
            try:
                stamp = item["timeStamp"]
                value = item["value"]
            except (KeyError, pva.FieldNotFound):
                with self._lock:
                    self._n_unusable += 1
                continue
            pending.append((_seconds(stamp), value, stamp))
        return pending

    def associate(self, frame_time: float) -> dict[str, tuple[Any, dict]]:
        """Find the metadata for a frame taken at ``frame_time``: ``{name: (value, timeStamp)}``.

        Consumes the matched value and every older one (counted as discarded).
        """
        tolerance = self.timestampTolerance
        # Compare in metadata time: metadata time + offset = frame time.
        frame_time -= self.metadataTimestampOffset
        low, high = frame_time - tolerance, frame_time + tolerance
        found: dict[str, tuple[Any, dict]] = {}
        n_matched = n_discarded = 0
        for name, queue in self.metadataQueueMap.items():
            pending = self._take(name, queue, high)
            while pending and pending[0][0] < low:
                pending.popleft()
                n_discarded += 1
            best = None
            for i, (t, _, _) in enumerate(pending):
                if t > high:
                    break
                if best is None or abs(t - frame_time) < abs(pending[best][0] - frame_time):
                    best = i
            if best is not None:
                for _ in range(best):
                    pending.popleft()
                    n_discarded += 1
                _, value, stamp = pending.popleft()
                found[name] = (value, stamp)
                n_matched += 1
            elif self.logger.isEnabledFor(logging.DEBUG):
                self.logger.debug(
                    "No %s value within %g s of frame time %.6f; next pending: %s",
                    name,
                    tolerance,
                    frame_time + self.metadataTimestampOffset,
                    f"{pending[0][0]:.6f}" if pending else "none",
                )
        with self._lock:
            self._n_matched += n_matched
            self._n_discarded += n_discarded
        return found

    def process(self, pvObject: Any) -> Any:
        """Attach the matching metadata to one frame, publish it and return it."""
        frame_time = get_data_timestamp(pvObject) or get_timestamp(pvObject)
        found = self.associate(frame_time)
        if found:
            attributes = list(pvObject["attribute"])
            for name, (value, stamp) in found.items():
                attributes.append(
                    {
                        "name": name,
                        "value": _pv_value(value),
                        "timeStamp": dict(stamp),
                        "source": name,
                        "descriptor": "metadata",
                    }
                )
            pvObject["attribute"] = attributes
        complete = len(found) == len(self.metadataQueueMap)
        with self._lock:
            self._n_frames += 1
            if complete:
                self._n_complete += 1
            else:
                self._n_incomplete += 1
        self.updateOutputChannel(pvObject)
        return pvObject

    def stop(self) -> None:
        """Log how many frames got all their metadata."""
        stats = self.getStats()
        self.logger.info(
            "Metadata: %d frames with all values, %d without; %d values matched, %d discarded",
            stats["nFramesWithFullMetadata"],
            stats["nFramesWithMissingMetadata"],
            stats["nMetadataMatched"],
            stats["nMetadataDiscarded"],
        )

    def resetStats(self) -> None:
        """Zero the counters (values pending in the matching lists stay)."""
        with self._lock:
            self._n_frames = 0
            self._n_complete = 0
            self._n_incomplete = 0
            self._n_matched = 0
            self._n_discarded = 0
            self._n_unusable = 0
            self._since = time.monotonic()

    def getStats(self) -> dict:
        """Frame counts (with full / missing metadata), values matched/discarded/pending, rate."""
        with self._lock:
            elapsed = time.monotonic() - self._since
            return {
                "nFrames": self._n_frames,
                "nFramesWithFullMetadata": self._n_complete,
                "nFramesWithMissingMetadata": self._n_incomplete,
                "nMetadataMatched": self._n_matched,
                "nMetadataDiscarded": self._n_discarded,
                "nMetadataUnusable": self._n_unusable,
                "nMetadataPending": sum(len(p) for p in list(self._pending.values())),
                "frameRate": self._n_frames / elapsed if elapsed > 0 else 0.0,
            }

    def getStatsPvaTypes(self) -> dict:
        """PVA types of :meth:`getStats`."""
        types = dict.fromkeys(
            (
                "nFrames",
                "nFramesWithFullMetadata",
                "nFramesWithMissingMetadata",
                "nMetadataMatched",
                "nMetadataDiscarded",
                "nMetadataUnusable",
                "nMetadataPending",
            ),
            pva.UINT,
        )
        types["frameRate"] = pva.DOUBLE
        return types
