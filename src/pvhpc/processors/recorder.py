"""StreamRecorder: record a stage's input, as it arrives, into HDF5 recording files.

Any consumer or collector can record with it (``-pc StreamRecorder -pa '{...}'``);
``pvhpc record`` is a consumer running it. Frames are passed on unchanged to the
stage's output channel, if it has one, so a recorder can sit inside a chain.

Configuration keys (camelCase, as every processor's):

``outputFile`` (required)
    The recording, e.g. ``run.h5`` (``{processorId}`` is replaced by the stage's id,
    for several consumers); numbered files (``run_0001.h5``…) with
    ``fileFrames``/``fileBytes`` or ``ringSeconds``. An existing file is never
    overwritten; the folder must exist.
``maxFrames``, ``maxBytes`` [0: no limit]
    End the recording after this many frames, or before the stored frame data
    would pass this many bytes; later frames count in ``nNotRecorded``.
``fileFrames``, ``fileBytes`` [0]
    Start the next numbered file after this many frames or bytes.
``ringSeconds`` [0]
    Flight recorder: keep the last N seconds in memory only; ``configure`` with
    ``{"dump": true}`` (or ``pvhpc record``'s ``dump`` command, or ``trigger``)
    writes them to the next numbered file.
``ringBytes`` [0: a quarter of the machine's memory]
    With ``ringSeconds``: the most frame data the ring keeps; when the last
    ``ringSeconds`` of the stream would take more, the oldest frames leave it early
    (``nRingEvicted``), and a dump says how many seconds it covers.
``trigger``
    ``[pva://|ca://]NAME OP NUMBER`` (OP ``< <= > >= == !=``): dump when a value of
    that metadata channel (one of the stage's ``--metadata-channels``) makes the
    condition true.
``metadataChannels``
    The stage's ``--metadata-channels`` text, so that each channel is recorded with
    its protocol (without it, channels are recorded as PVA).
``flushPeriod`` [1.0]
    Seconds between flushes; after each, the file on disk is complete up to its
    last frame.

The file layout is described in :mod:`pvhpc.record.layout`.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any

import pvaccess as pva

from ..endpoints import parse_channel_list
from ..errors import UsageError
from ..processor import UserDataProcessor
from ..record.capture import capture_frame, capture_metadata
from ..record.recorder import Recorder, RecordSettings, check_output_path
from ..record.trigger import parse_trigger

__all__ = ["StreamRecorder", "settings_from_config"]

# The recorder's own thread drains metadata queues and flushes this often (s).
_TICK = 0.02

_INT_KEYS = ("maxFrames", "maxBytes", "fileFrames", "fileBytes", "ringBytes")


def settings_from_config(config: dict, channel: str = "") -> RecordSettings:
    """RecordSettings from the processor's configuration keys; UsageError naming the
    key of a bad value."""
    path = config.get("outputFile")
    if not isinstance(path, str) or not path:
        raise UsageError("StreamRecorder: outputFile (the recording's file name) is required")
    values: dict[str, Any] = {}
    for key in _INT_KEYS:
        value = config.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise UsageError(f"StreamRecorder: {key} must be a whole number >= 0, got {value!r}")
        values[key] = value
    numbers = {}
    for key, default in (("ringSeconds", 0.0), ("flushPeriod", 1.0)):
        value = config.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise UsageError(f"StreamRecorder: {key} must be a number >= 0, got {value!r}")
        numbers[key] = float(value)
    channels = parse_channel_list(config.get("metadataChannels"), "metadataChannels")
    trigger = parse_trigger(config["trigger"], "trigger") if config.get("trigger") else None
    if trigger is not None and numbers["ringSeconds"] <= 0:
        raise UsageError("StreamRecorder: trigger needs ringSeconds (the flight recorder)")
    if values["ringBytes"] and numbers["ringSeconds"] <= 0:
        raise UsageError("StreamRecorder: ringBytes needs ringSeconds (the flight recorder)")
    return RecordSettings(
        output_file=path,
        channel=channel,
        metadata={e.name: e.protocol for e in channels},
        max_frames=values["maxFrames"],
        max_bytes=values["maxBytes"],
        file_frames=values["fileFrames"],
        file_bytes=values["fileBytes"],
        ring_seconds=numbers["ringSeconds"],
        ring_bytes=values["ringBytes"],
        trigger=trigger,
        flush_period=numbers["flushPeriod"] or 1.0,
    )


class StreamRecorder(UserDataProcessor):
    """Record every frame the stage receives, and its metadata channels.

    Threads: ``process`` in the stage's processing (or monitor) thread; a thread of
    the recorder's own drains the metadata queues and flushes the file; ``configure``
    (``dump``) in the control thread. ``stop`` closes the last file.
    """

    def __init__(self, configDict: dict | None = None) -> None:
        super().__init__(configDict)
        self.settings = settings_from_config(self.configDict)
        self._path_template = self.settings.output_file
        check_output_path(self._settings_for(0), "outputFile")
        self.recorder: Recorder | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.last_message = ""

    @property
    def finished(self) -> str | None:
        """Why the recording ended (a limit, a full disk), or None while it goes on."""
        return self.recorder.finished if self.recorder is not None else None

    @property
    def failed(self) -> bool:
        """Whether it ended by an error (a full disk, a write error)."""
        return self.recorder.failed if self.recorder is not None else False

    def _settings_for(self, processor_id: Any) -> RecordSettings:
        try:
            path = self._path_template.format(processorId=processor_id)
        except (KeyError, IndexError, ValueError) as exc:
            raise UsageError(
                f"outputFile: {self._path_template!r} is not a file name with an optional "
                f"{{processorId}} ({exc})"
            ) from None
        return dataclasses.replace(self.settings, output_file=path)

    def start(self) -> None:
        s = self.settings = self._settings_for(self.processorId)
        if s.output_file != self._path_template:
            check_output_path(s, "outputFile")
        s.channel = self.inputChannel or s.channel
        for name in self.metadataQueueMap:
            s.metadata.setdefault(name, "pva")
        if s.trigger is not None and s.trigger.endpoint.name not in self.metadataQueueMap:
            raise UsageError(
                f"trigger: channel {s.trigger.endpoint.name!r} is not one of the stage's "
                "metadata channels (add it to --metadata-channels)"
            )
        self.recorder = Recorder(s)
        self._thread = threading.Thread(target=self._run, name="recorder", daemon=True)
        self._thread.start()

    def process(self, pvObject: Any) -> Any:
        arrival = time.time()
        recorder = self.recorder
        assert recorder is not None, "process() before start()"
        recorder.add_frame(capture_frame(pvObject, arrival))
        self.updateOutputChannel(pvObject)
        return pvObject

    def _run(self) -> None:
        while not self._stop.wait(_TICK):
            self._drain_metadata()
            assert self.recorder is not None
            self.recorder.tick()

    def _drain_metadata(self) -> None:
        recorder = self.recorder
        assert recorder is not None
        for name, q in self.metadataQueueMap.items():
            while True:
                try:
                    pv = q.get()
                except pva.QueueEmpty:
                    break
                value, stamp = capture_metadata(pv)
                recorder.add_metadata(name, value, stamp, time.time())

    def dump(self, reason: str = "dump command") -> str:
        """Write the flight recorder's last seconds now (see :meth:`Recorder.dump`)."""
        if self.recorder is None:
            return "dump: the recorder has not started; nothing written"
        self._drain_metadata()
        self.last_message = self.recorder.dump(reason)
        self.logger.info("%s", self.last_message)
        return self.last_message

    def configure(self, configDict: dict) -> None:
        if configDict.get("dump"):
            self.dump("configure dump")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.recorder is not None:
            self._drain_metadata()
            self.recorder.close()

    def getStats(self) -> dict:
        return self.recorder.stats() if self.recorder is not None else {}

    def getStatsPvaTypes(self) -> dict:
        return {
            "nRecorded": pva.ULONG,
            "nNotRecorded": pva.ULONG,
            "nQueued": pva.ULONG,
            "nMetadata": pva.ULONG,
            "nFiles": pva.UINT,
            "storedBytes": pva.ULONG,
            "currentFile": pva.STRING,
            "ringFrames": pva.ULONG,
            "ringSeconds": pva.DOUBLE,
            "ringBytes": pva.ULONG,
            "nRingEvicted": pva.ULONG,
            "nDumps": pva.UINT,
            "nDumped": pva.ULONG,
            "lastDump": pva.STRING,
            "finished": pva.STRING,
            "failed": pva.BOOLEAN,
        }
