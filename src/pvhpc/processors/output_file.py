"""AdOutputFileProcessor: write every frame to its own image file (TIFF, PNG or JPEG).

Configuration keys (camelCase, as in PvaPy's processor of the same name):

``outputDirectory`` [``.``]
    Created if missing. An unusable directory is reported when the processor is
    constructed, so the command fails at once with a clear message.
``outputFileNameFormat`` [``{uniqueId:06d}.tiff``]
    A :meth:`str.format` pattern with the fields ``{uniqueId}`` and ``{frameId}``
    (the frame's ``uniqueId``), ``{objectId}`` (the value of the runtime's object id
    field, ``--oid-field``) and ``{processorId}``. The extension picks the format:
    ``.tif``/``.tiff``, ``.png``, ``.jpg``/``.jpeg``. It may contain ``/`` to spread
    files over subdirectories (created as needed).
``objectIdOffset``
    Accepted for compatibility; the runtime, not this processor, uses it.
``writeAttributes`` [true]
    TIFF files carry the frame's id, times and NTNDArray attributes in the private
    tags areaDetector's TIFF plugin writes (:data:`TIFF_TAGS`); false leaves them out.

Which pixel types each format holds exactly (anything else is an error naming the
frame, its type and the formats that would work):

* TIFF: bool, uint8, uint16 and float32 as they are; int8, int16, int32 and uint32
  (values below 2**31) as 32-bit signed integers; RGB uint8.
* PNG: bool, uint8, uint16; RGB uint8.
* JPEG: uint8 mono and RGB uint8, lossy by nature.

Each file is written under a temporary name (``<name>.part``) and renamed when
complete, so a program watching the directory never reads half a file. Existing
files of the same name are replaced. ``process`` republishes the frame unchanged
before writing it.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import numpy as np
import pvaccess as pva

from ..processor import UserDataProcessor, config_flag
from ..record.capture import read_attributes
from .ad_image import get_data_timestamp, get_field, get_frame_id, get_image

__all__ = ["AdOutputFileProcessor"]

_FORMATS = {".tif": "TIFF", ".tiff": "TIFF", ".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}
_EXACT = {
    "TIFF": {"bool", "uint8", "uint16", "float32", "int8", "int16", "int32", "uint32"},
    "PNG": {"bool", "uint8", "uint16"},
    "JPEG": {"uint8"},
}
_NAME_FIELDS = ("uniqueId", "frameId", "objectId", "processorId")

#: The private TIFF tags of areaDetector's NDFileTIFF, filled as its NTNDArray
#: converter maps them: the NDArray's timeStamp (DOUBLE; the frame's dataTimeStamp as
#: carried), its uniqueId (LONG), its EPICS timestamp in the EPICS epoch (1990) as
#: seconds and nanoseconds (LONG; the frame's timeStamp), and from 65010 up to 65499
#: one ASCII tag ``name:value`` per NTNDArray attribute.
TIFF_TAGS = {"ndTimeStamp": 65000, "uniqueId": 65001, "epicsSeconds": 65002,
             "epicsNanoseconds": 65003}  # fmt: skip
TIFF_FIRST_ATTRIBUTE_TAG = 65010
TIFF_END_ATTRIBUTE_TAG = 65500  # the first tag past them
#: POSIX seconds at the EPICS epoch (1990-01-01): PVA stamps count from 1970.
EPICS_EPOCH = 631152000


def _import_pillow() -> Any:
    try:
        from PIL import Image
    except ImportError as exc:
        raise ImportError(
            "AdOutputFileProcessor needs the 'pillow' package: pip install pvhpc[files] "
            "(or pip install pillow)"
        ) from exc
    return Image


def check_file_name_format(name_format: str, fields: tuple[str, ...], option: str) -> str:
    """Check a ``str.format`` pattern uses only ``fields``; return a sample file name.

    Raises ``ValueError`` naming the option, the bad field and the allowed ones.
    """
    sample = dict.fromkeys(fields, 1)
    try:
        return name_format.format(**sample)
    except KeyError as exc:
        raise ValueError(
            f"{option} {name_format!r}: unknown field {{{exc.args[0]}}}; "
            f"use {', '.join('{' + f + '}' for f in fields)}"
        ) from None
    except (ValueError, IndexError) as exc:
        raise ValueError(f"{option} {name_format!r}: {exc}") from None


def prepare_directory(path: str, option: str = "outputDirectory") -> str:
    """Create ``path`` if needed and check that files can be created in it.

    Returns the absolute path; raises ``ValueError`` with the option, the path and
    the reason if it is unusable.
    """
    path = os.path.abspath(os.path.expanduser(path))
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"{option} {path}: not a directory")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"{option} {path}: cannot create it: {exc.strerror or exc}") from None
    if not os.path.isdir(path):
        raise ValueError(f"{option} {path}: not a directory")
    if not os.access(path, os.W_OK | os.X_OK):
        raise ValueError(f"{option} {path}: no permission to write files in it")
    probe = os.path.join(path, f".pvhpc-write-test-{os.getpid()}-{threading.get_ident()}")
    try:
        with open(probe, "wb") as f:
            f.write(b"x")
        os.remove(probe)
    except OSError as exc:
        raise ValueError(
            f"{option} {path}: cannot write files in it: {exc.strerror or exc}"
        ) from None
    return path


class AdOutputFileProcessor(UserDataProcessor):
    """Writes each frame to one image file and republishes it.

    Construction validates the configuration and prepares the directory (raising
    ``ValueError`` with a clear message). ``process`` runs in the runtime's
    processing thread and blocks for as long as the file takes to write; a failed
    write is counted in ``nErrors`` and raised, so the runtime counts it too and
    the stream goes on. ``configure`` may change any key while data flows; the next
    frame uses it.
    """

    def __init__(self, configDict: dict | None = None) -> None:
        super().__init__(configDict)
        self._image = _import_pillow()
        self._lock = threading.Lock()
        self.outputDirectory = "."
        self.outputFileNameFormat = "{uniqueId:06d}.tiff"
        self.objectIdOffset = 0
        self.writeAttributes = True
        self._said_too_many = False
        self._apply(self.configDict)
        self._made_dirs: set[str] = set()
        self.resetStats()

    def _apply(self, config: dict) -> None:
        directory = str(config.get("outputDirectory", self.outputDirectory))
        name_format = str(config.get("outputFileNameFormat", self.outputFileNameFormat))
        check_file_name_format(name_format, _NAME_FIELDS, "outputFileNameFormat")
        ext = os.path.splitext(name_format)[1].lower()
        file_format = _FORMATS.get(ext)
        if file_format is None:
            raise ValueError(
                f"outputFileNameFormat {name_format!r}: extension {ext or '(none)'} does not "
                f"name an image format; use one of {', '.join(_FORMATS)}"
            )
        offset = config.get("objectIdOffset", self.objectIdOffset)
        try:
            offset = int(offset)
        except (TypeError, ValueError):
            raise ValueError(f"objectIdOffset {offset!r}: not an integer") from None
        tags = config_flag(config.get("writeAttributes", self.writeAttributes), "writeAttributes")
        directory = prepare_directory(directory)
        with self._lock:
            self.outputDirectory = directory
            self.outputFileNameFormat = name_format
            self.objectIdOffset = offset
            self.writeAttributes = tags
            self._format = file_format
            self._made_dirs = set()

    def start(self) -> None:
        """Check the output directory again (it may have gone since construction)."""
        prepare_directory(self.outputDirectory)
        self.logger.info(
            "processor %s writes %s files to %s as %s",
            self.processorId,
            self._format,
            self.outputDirectory,
            self.outputFileNameFormat,
        )

    def configure(self, configDict: dict) -> None:
        """Apply ``outputDirectory``/``outputFileNameFormat``/``objectIdOffset`` changes.

        Called from the control channel's thread; raises ``ValueError`` (and changes
        nothing) if the new settings are unusable.
        """
        keys = {"outputDirectory", "outputFileNameFormat", "objectIdOffset", "writeAttributes"}
        if keys & set(configDict):
            self._apply(configDict)

    def file_name(self, pvObject: Any) -> str:
        """The path ``pvObject`` is written to."""
        frame_id = get_frame_id(pvObject)
        field = self.objectIdField or "uniqueId"
        object_id = frame_id if field == "uniqueId" else pvObject[field]
        name = self.outputFileNameFormat.format(
            uniqueId=frame_id, frameId=frame_id, objectId=object_id, processorId=self.processorId
        )
        return os.path.join(self.outputDirectory, name)

    def _pillow_image(self, pvObject: Any) -> Any:
        image = get_image(pvObject)
        color = image.ndim == 3 and image.shape[2] == 3
        dtype = image.dtype.name
        if not (image.ndim == 2 or color):
            raise ValueError(
                f"frame {get_frame_id(pvObject)}: shape {image.shape} is neither a mono "
                "(ny, nx) nor an RGB (ny, nx, 3) image"
            )
        fmt = self._format
        if color:
            fits = ["TIFF", "PNG", "JPEG"] if dtype == "uint8" else []
        else:
            fits = [f for f, types in _EXACT.items() if dtype in types]
        if fmt not in fits:
            hint = f"use {'/'.join(fits)}" if fits else "use Hdf5AdImageWriter"
            raise ValueError(
                f"frame {get_frame_id(pvObject)}: {fmt} cannot hold {'RGB ' if color else ''}"
                f"{dtype} pixels exactly; {hint}"
            )
        if dtype in ("int8", "int16"):
            image = image.astype(np.int32)
        elif dtype == "uint32":
            if image.size and int(image.max()) >= 2**31:
                raise ValueError(
                    f"frame {get_frame_id(pvObject)}: uint32 values above 2**31-1 do not fit "
                    "a TIFF written by pillow (32-bit signed); use Hdf5AdImageWriter"
                )
            image = image.astype(np.int32)
        return self._image.fromarray(np.ascontiguousarray(image))

    def process(self, pvObject: Any) -> Any:
        """Republish the frame, then write it to its file."""
        self.updateOutputChannel(pvObject)
        started = time.monotonic()
        try:
            path = self.file_name(pvObject)
            directory = os.path.dirname(path)
            if directory not in self._made_dirs:
                os.makedirs(directory, exist_ok=True)
                self._made_dirs.add(directory)
            image = self._pillow_image(pvObject)
            part = path + ".part"
            extra = {}
            if self._format == "TIFF" and self.writeAttributes:
                extra["tiffinfo"] = self._tiff_tags(pvObject)
            with open(part, "wb") as f:
                image.save(f, format=self._format, **extra)
                size = f.tell()
            os.replace(part, path)
        except Exception:
            self.nErrors += 1
            raise
        finished = time.monotonic()
        if self._first_write is None:
            self._first_write = started
        self._last_write = finished
        self._write_time += finished - started
        self.nFilesWritten += 1
        self.nBytesWritten += size
        return pvObject

    def _tiff_tags(self, frame: Any) -> Any:
        """The frame's id, time and attributes as areaDetector's TIFF plugin tags them."""
        from PIL import TiffImagePlugin, TiffTags

        ifd = TiffImagePlugin.ImageFileDirectory_v2()

        def put(tag: int, value: Any, kind: int) -> None:
            ifd[tag] = value
            ifd.tagtype[tag] = kind

        put(TIFF_TAGS["ndTimeStamp"], get_data_timestamp(frame), TiffTags.DOUBLE)
        uid = get_frame_id(frame)
        if 0 <= uid < 2**32:
            put(TIFF_TAGS["uniqueId"], uid, TiffTags.LONG)
        stamp = get_field(frame, "timeStamp", None) or {}
        seconds = int(stamp.get("secondsPastEpoch", 0)) - EPICS_EPOCH
        if 0 <= seconds < 2**32:
            put(TIFF_TAGS["epicsSeconds"], seconds, TiffTags.LONG)
            put(TIFF_TAGS["epicsNanoseconds"], int(stamp.get("nanoseconds", 0)), TiffTags.LONG)
        attributes = read_attributes(frame)
        room = TIFF_END_ATTRIBUTE_TAG - TIFF_FIRST_ATTRIBUTE_TAG
        if len(attributes) > room and not self._said_too_many:
            self._said_too_many = True
            self.logger.warning(
                "frame %s has %d attributes; the TIFF tags areaDetector uses for them hold "
                "%d, so the rest are left out of the files (Hdf5AdImageWriter keeps them all)",
                uid,
                len(attributes),
                room,
            )
        for k, (name, value, *_) in enumerate(attributes[:room]):
            text = "" if value is None else str(value)
            put(TIFF_FIRST_ATTRIBUTE_TAG + k, f"{name}:{text}", TiffTags.ASCII)
        return ifd

    def resetStats(self) -> None:
        """Zero the file counters and rates."""
        self.nFilesWritten = 0
        self.nBytesWritten = 0
        self.nErrors = 0
        self._first_write: float | None = None
        self._last_write = 0.0
        self._write_time = 0.0

    def getStats(self) -> dict:
        """``nFilesWritten``, ``nBytesWritten``, ``nErrors``, ``fileWriteRate`` (files/s
        from the first write to the last), ``byteWriteRate`` (bytes/s, same span) and
        ``averageWriteTime`` (seconds per file)."""
        span = (self._last_write - self._first_write) if self._first_write is not None else 0.0
        n = self.nFilesWritten
        return {
            "nFilesWritten": n,
            "nBytesWritten": self.nBytesWritten,
            "nErrors": self.nErrors,
            "fileWriteRate": n / span if span > 0 else 0.0,
            "byteWriteRate": self.nBytesWritten / span if span > 0 else 0.0,
            "averageWriteTime": self._write_time / n if n else 0.0,
        }

    def getStatsPvaTypes(self) -> dict:
        """PVA types of :meth:`getStats`."""
        return {
            "nFilesWritten": pva.ULONG,
            "nBytesWritten": pva.ULONG,
            "nErrors": pva.ULONG,
            "fileWriteRate": pva.DOUBLE,
            "byteWriteRate": pva.DOUBLE,
            "averageWriteTime": pva.DOUBLE,
        }
