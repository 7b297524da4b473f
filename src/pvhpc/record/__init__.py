"""Recording a stream into HDF5 files and reading recordings back.

The building blocks of ``pvhpc record`` and of the simulator's replay, one concern
each: :mod:`.capture` (what is kept of a received frame), :mod:`.chunks` (frames as
HDF5 chunks with the codecs' filter ids), :mod:`.layout` (the file), :mod:`.recorder`
(limits, numbered files, the disk check, the flight recorder), :mod:`.trigger`
(``--trigger`` conditions) and :mod:`.reader` (:class:`Recording`). The recording
processor is :class:`pvhpc.processors.StreamRecorder`; the command's runtime is
:mod:`.session`.
"""

from .capture import CapturedFrame, capture_frame, capture_metadata
from .layout import FORMAT_VERSION, RecordFile
from .reader import MetadataLog, Recording, is_recording
from .recorder import Recorder, RecordSettings
from .trigger import Trigger, parse_trigger

__all__ = [
    "FORMAT_VERSION",
    "CapturedFrame",
    "MetadataLog",
    "RecordFile",
    "RecordSettings",
    "Recorder",
    "Recording",
    "Trigger",
    "capture_frame",
    "capture_metadata",
    "is_recording",
    "parse_trigger",
]
