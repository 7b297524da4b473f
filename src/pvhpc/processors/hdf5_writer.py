"""Hdf5AdImageWriter: append frames to HDF5 files, ``nImagesPerFile`` frames per file.

Configuration keys (camelCase, as in PvaPy's processor of the same name):

``outputDirectory`` [``.``]
    Created if missing; an unusable directory fails construction with a clear message.
``outputFileNameFormat`` [``{outputFileId:06d}.{processorId}.h5``]
    A :meth:`str.format` pattern with ``{outputFileId}`` (1, 2, … for this
    processor's successive files) and ``{processorId}``.
``nImagesPerFile`` [1000]
    Frames per file; ≤ 0 puts the whole run in one file.
``datasetName`` [``/entry/data/data``]
    The image dataset. Beside it, in the same group, one value per frame:
    ``uniqueId`` (int64), ``timeStamp`` and ``dataTimeStamp`` (float64 seconds
    since the epoch); these are written when the file is closed.
``attributeGroup`` [``/entry/instrument/NDAttributes``]
    Where the frames' NTNDArray attributes go, as areaDetector's HDF5 plugin puts
    them: one dataset per attribute name, one value per frame, of the attribute's
    type (see :class:`pvhpc.record.layout.AttributeColumns` for frames without a
    value); ``""`` writes no attributes.
``keepCompression`` [false]
    Store compressed frames (``codec.name`` set) as they arrived: their bytes become
    the HDF5 chunk of the filter that decodes them (lz4 32004, bitshuffle/lz4 32008,
    blosc 32001; see :mod:`pvhpc.record.chunks`), with no decompression on the way.
    Readers need the filter plugins (``pip install hdf5plugin``). RGB2/RGB3 frames,
    stored transposed, and jpeg frames (no HDF5 filter) are decompressed as without
    the option.

The image dataset is ``(n, ny, nx)`` for mono frames and ``(n, ny, nx, 3)`` for RGB,
of the frames' own dtype, one chunk per frame; compressed frames are stored
decompressed unless ``keepCompression``. A file holds frames of one shape, type and
(with ``keepCompression``) codec: a frame that differs closes the current file and
starts the next one. Every file is closed on
``stop()``, its datasets trimmed to the frames it holds, and carries the
attributes ``nImages`` and ``processorId`` on the image dataset. Files are written
under their final name; an existing file of that name is replaced.
"""

from __future__ import annotations

import math
import os
import posixpath
import threading
import time
from typing import Any, NamedTuple

import numpy as np
import pvaccess as pva

from ..ntnda import COLOR_MODE_RGB2, COLOR_MODE_RGB3, get_codec, get_color_mode, get_dims
from ..processor import UserDataProcessor, config_flag
from ..record.capture import capture_frame, read_attributes
from ..record.chunks import FILTERS, chunk_bytes, filter_options
from ..record.layout import AttributeColumns
from .ad_image import get_data_timestamp, get_frame_id, get_image, get_timestamp
from .output_file import check_file_name_format, prepare_directory

__all__ = ["Hdf5AdImageWriter"]

_NAME_FIELDS = ("outputFileId", "processorId")


def _import_h5py() -> Any:
    try:
        import h5py
    except ImportError as exc:
        raise ImportError(
            "Hdf5AdImageWriter needs the 'h5py' package: pip install pvhpc[files] "
            "(or pip install h5py)"
        ) from exc
    return h5py


_SIDE_DATASETS = ("uniqueId", "timeStamp", "dataTimeStamp")

#: Attribute values are written every so many frames, so a file of the whole run does
#: not keep them all in memory.
_ATTRIBUTE_ROWS = 1024


class _Settings(NamedTuple):
    """The configuration in effect, read together (``configure`` replaces it whole)."""

    directory: str
    name_format: str
    n_images: int
    dataset: str
    attribute_group: str
    keep_compression: bool


class _OpenFile:
    """One HDF5 file being filled; owned by the processing thread.

    Made for frames of one ``layout``: (shape, dtype, codec), codec ``''`` for images
    stored uncompressed. Images go straight to their chunk (one chunk per frame, no
    filter pipeline: twice as fast as slice assignment for small frames); so do
    compressed frames, wrapped for their filter. Ids and timestamps are kept in
    memory and written when the file is closed.
    """

    def __init__(
        self,
        h5py: Any,
        path: str,
        dataset: str,
        capacity: int,
        layout: tuple,
        settings: _Settings,
    ):
        self.path = path
        self.settings = settings  # what this file was opened with, for all its frames
        self.layout = layout
        attribute_group = settings.attribute_group
        self.shape, self.dtype, self.codec = layout
        self.count = 0
        self.capacity = capacity
        self.meta: list[tuple[int, float, float]] = []
        self._zeros = (0,) * len(self.shape)
        nbytes = math.prod(self.shape) * self.dtype.itemsize
        initial = capacity if capacity > 0 else 64
        self.file = h5py.File(path, "w")
        try:
            self.images = self.file.create_dataset(
                dataset,
                shape=(initial, *self.shape),
                maxshape=(capacity if capacity > 0 else None, *self.shape),
                dtype=self.dtype,
                chunks=(1, *self.shape) if nbytes else True,
                **filter_options(self.codec, self.dtype.itemsize, nbytes),
            )
            if self.codec:
                self.images.attrs["codec"] = self.codec
        except BaseException:
            self.file.close()
            raise
        self._direct = nbytes > 0
        self.attributes = (
            AttributeColumns(h5py, lambda: self.file.require_group(attribute_group))
            if attribute_group
            else None
        )
        self._attributes_written = 0

    def append(
        self, data: np.ndarray, frame_id: int, stamp: float, data_stamp: float, attributes: list
    ) -> None:
        """Add one frame: ``data`` is the image, or, for a compressed layout, the
        frame's chunk (:func:`chunk_bytes`)."""
        i = self.count
        if i >= self.images.shape[0]:
            self.images.resize(2 * i, axis=0)
        if self._direct:
            chunk = data if self.codec else np.ascontiguousarray(data)
            self.images.id.write_direct_chunk((i, *self._zeros), chunk)
        else:
            self.images[i] = data
        self.meta.append((frame_id, stamp, data_stamp))
        self.count = i + 1
        if self.attributes is not None:
            if attributes:
                self.attributes.add(i, attributes)
            if self.count - self._attributes_written >= _ATTRIBUTE_ROWS:
                self.attributes.write(self._attributes_written, self.count)
                self._attributes_written = self.count

    @property
    def full(self) -> bool:
        return 0 < self.capacity <= self.count

    def close(self, processor_id: Any) -> int:
        """Trim the images to the frames written, add ids and timestamps, close.

        Returns the file size in bytes.
        """
        try:
            if self.images.shape[0] != self.count:
                self.images.resize(self.count, axis=0)
            self.images.attrs["nImages"] = self.count
            if processor_id is not None:
                self.images.attrs["processorId"] = processor_id
            parent = self.images.parent
            columns = list(zip(*self.meta, strict=True)) if self.meta else [(), (), ()]
            for name, values, dtype in zip(
                _SIDE_DATASETS, columns, ("i8", "f8", "f8"), strict=True
            ):
                parent.create_dataset(name, data=np.asarray(values, dtype=dtype))
            if self.attributes is not None:
                self.attributes.write(self._attributes_written, self.count, final=True)
        finally:
            self.file.close()
        return os.path.getsize(self.path)


class Hdf5AdImageWriter(UserDataProcessor):
    """Appends every frame to the current HDF5 file and republishes it.

    Construction validates the configuration and the directory (``ValueError``
    with a clear message). ``process`` runs in the processing thread; it opens a
    file at the first frame of each file and closes it when ``nImagesPerFile``
    frames are in. ``stop()`` closes the last, partly filled file. ``configure``
    (control channel thread) may change any key; the change applies from the next
    file on. A failed write is counted in ``nErrors`` and raised.
    """

    def __init__(self, configDict: dict | None = None) -> None:
        super().__init__(configDict)
        self._h5py = _import_h5py()
        self._lock = threading.Lock()
        self.outputDirectory = "."
        self.outputFileNameFormat = "{outputFileId:06d}.{processorId}.h5"
        self.nImagesPerFile = 1000
        self.datasetName = "/entry/data/data"
        self.attributeGroup = "/entry/instrument/NDAttributes"
        self.keepCompression = False
        self._settings: _Settings
        self._apply(self.configDict)
        self._file: _OpenFile | None = None
        self.outputFileId = 0
        self.resetStats()

    def _apply(self, config: dict) -> None:
        directory = str(config.get("outputDirectory", self.outputDirectory))
        name_format = str(config.get("outputFileNameFormat", self.outputFileNameFormat))
        check_file_name_format(name_format, _NAME_FIELDS, "outputFileNameFormat")
        n_images = config.get("nImagesPerFile", self.nImagesPerFile)
        try:
            n_images = int(n_images)
        except (TypeError, ValueError):
            raise ValueError(f"nImagesPerFile {n_images!r}: not an integer") from None
        if n_images != 1 and "{outputFileId" not in name_format and n_images > 0:
            raise ValueError(
                f"outputFileNameFormat {name_format!r} has no {{outputFileId}}: every file "
                f"of {n_images} images would overwrite the previous one"
            )
        dataset = str(config.get("datasetName", self.datasetName))
        if not dataset.strip("/"):
            raise ValueError(f"datasetName {dataset!r}: needs a dataset name")
        if posixpath.basename(dataset.rstrip("/")) in _SIDE_DATASETS:
            raise ValueError(
                f"datasetName {dataset!r}: {', '.join(_SIDE_DATASETS)} are the names of the "
                "datasets stored beside the images; choose another name"
            )
        dataset = "/" + dataset.strip("/")
        group = str(config.get("attributeGroup", self.attributeGroup)).strip()
        if group:
            group = "/" + group.strip("/")
            inside = (group == "/" or dataset.startswith(group + "/")  # an ancestor
                      or group == dataset or group.startswith(dataset + "/"))  # fmt: skip
            if inside:
                raise ValueError(
                    f"attributeGroup {group!r}: the images and the datasets beside them are "
                    f"in {posixpath.dirname(dataset)!r}; give the attributes a group of "
                    'their own, not holding those (or "" for none)'
                )
        keep = config_flag(config.get("keepCompression", self.keepCompression), "keepCompression")
        directory = prepare_directory(directory)
        with self._lock:
            self.outputDirectory = directory
            self.outputFileNameFormat = name_format
            self.nImagesPerFile = n_images
            self.datasetName = dataset
            self.attributeGroup = group
            self.keepCompression = keep
            self._settings = _Settings(directory, name_format, n_images, dataset, group, keep)

    def start(self) -> None:
        """Check the output directory again (it may have gone since construction)."""
        prepare_directory(self.outputDirectory)
        self.logger.info(
            "processor %s writes HDF5 files of %s images to %s as %s, dataset %s",
            self.processorId,
            self.nImagesPerFile if self.nImagesPerFile > 0 else "all",
            self.outputDirectory,
            self.outputFileNameFormat,
            self.datasetName,
        )

    def configure(self, configDict: dict) -> None:
        """Apply configuration changes from the next file on; ``ValueError`` if unusable."""
        keys = {
            "outputDirectory",
            "outputFileNameFormat",
            "nImagesPerFile",
            "datasetName",
            "attributeGroup",
            "keepCompression",
        }
        if keys & set(configDict):
            self._apply(configDict)

    def _open(self, layout: tuple, s: _Settings) -> _OpenFile:
        self.outputFileId += 1
        name = s.name_format.format(outputFileId=self.outputFileId, processorId=self.processorId)
        path = os.path.join(s.directory, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self.logger.debug("opening %s", path)
        return _OpenFile(self._h5py, path, s.dataset, s.n_images, layout, s)

    def _close(self) -> None:
        current, self._file = self._file, None
        if current is None:
            return
        size = current.close(self.processorId)
        self.nFilesWritten += 1
        self.nBytesWritten += size
        self.fileNames.append(current.path)
        self.logger.debug("closed %s with %d images", current.path, current.count)

    def _abandon(self, exc: BaseException) -> None:
        """After a failed write: keep what the file holds if possible, start afresh."""
        current = self._file
        if current is None:
            return
        self.logger.error(
            "writing %s failed (%s: %s); closing it, the next frame starts a new file",
            current.path,
            type(exc).__name__,
            exc,
        )
        try:
            self._close()
        except Exception as close_exc:  # noqa: BLE001 - already failing: log, go on
            self.logger.error("cannot close %s: %s", current.path, close_exc)

    def process(self, pvObject: Any) -> Any:
        """Republish the frame, then append it to the current file."""
        self.updateOutputChannel(pvObject)
        started = time.monotonic()
        current = self._file
        # A file keeps the settings it was opened with; changes apply from the next one.
        settings = current.settings if current is not None else self._settings
        try:
            data, layout, nbytes, attributes = self._frame_data(pvObject, settings)
        except Exception:
            self.nErrors += 1
            raise
        try:
            if current is not None and current.layout != layout:
                self.logger.info(
                    "frame %s is %s %s%s, file %s holds %s %s%s: starting a new file",
                    get_frame_id(pvObject),
                    layout[1],
                    layout[0],
                    f" {layout[2]}" if layout[2] else "",
                    current.path,
                    current.dtype,
                    current.shape,
                    f" {current.codec}" if current.codec else "",
                )
                self._close()
                current = None
                if self._settings is not settings:  # changed meanwhile: the new file's
                    settings = self._settings
                    data, layout, nbytes, attributes = self._frame_data(pvObject, settings)
            if current is None:
                current = self._file = self._open(layout, settings)
            current.append(
                data,
                get_frame_id(pvObject),
                get_timestamp(pvObject),
                get_data_timestamp(pvObject),
                attributes,
            )
            self.nFramesWritten += 1
            self.nImageBytesWritten += nbytes
            if current.full:
                self._close()
        except Exception as exc:
            self.nErrors += 1
            self._abandon(exc)
            raise
        finished = time.monotonic()
        if self._first_write is None:
            self._first_write = started
        self._last_write = finished
        return pvObject

    @staticmethod
    def _frame_data(frame: Any, settings: _Settings) -> tuple:
        """``(data, layout, nbytes, attributes)`` of a frame: the image, or with
        ``keepCompression`` the chunk of a compressed frame, as it arrived."""
        with_attributes = bool(settings.attribute_group)
        if settings.keep_compression and get_codec(frame) in FILTERS and not _transposed(frame):
            captured = capture_frame(frame, 0.0)
            nbytes = captured.nbytes
            chunk = chunk_bytes(captured.codec, captured.payload, nbytes, captured.dtype.itemsize)
            return chunk, captured.layout, nbytes, captured.attributes if with_attributes else ()
        image = get_image(frame)
        attributes = read_attributes(frame) if with_attributes else ()
        return image, (image.shape, image.dtype, ""), image.nbytes, attributes

    def stop(self) -> None:
        """Close the current file, trimmed to the frames it holds."""
        self._close()

    def resetStats(self) -> None:
        """Zero the counters (the list of written files is kept)."""
        self.nFilesWritten = 0
        self.nFramesWritten = 0
        self.nBytesWritten = 0
        self.nImageBytesWritten = 0
        self.nErrors = 0
        self._first_write: float | None = None
        self._last_write = 0.0
        if not hasattr(self, "fileNames"):
            self.fileNames: list[str] = []

    def getStats(self) -> dict:
        """``nFilesWritten`` (closed files), ``nFramesWritten``, ``nBytesWritten`` (sizes of
        the closed files), ``nImageBytesWritten`` (pixel bytes), ``nErrors``,
        ``frameWriteRate`` (frames/s from the first write to the last) and
        ``currentFileId``."""
        span = (self._last_write - self._first_write) if self._first_write is not None else 0.0
        return {
            "nFilesWritten": self.nFilesWritten,
            "nFramesWritten": self.nFramesWritten,
            "nBytesWritten": self.nBytesWritten,
            "nImageBytesWritten": self.nImageBytesWritten,
            "nErrors": self.nErrors,
            "frameWriteRate": self.nFramesWritten / span if span > 0 else 0.0,
            "currentFileId": self.outputFileId,
        }

    def getStatsPvaTypes(self) -> dict:
        """PVA types of :meth:`getStats`."""
        return {
            "nFilesWritten": pva.ULONG,
            "nFramesWritten": pva.ULONG,
            "nBytesWritten": pva.ULONG,
            "nImageBytesWritten": pva.ULONG,
            "nErrors": pva.ULONG,
            "frameWriteRate": pva.DOUBLE,
            "currentFileId": pva.UINT,
        }


def _transposed(frame: Any) -> bool:
    """Whether the writer stores this frame in another order than it carries it
    (RGB2, RGB3: ``get_image`` transposes them)."""
    return len(get_dims(frame)) == 3 and get_color_mode(frame) in (COLOR_MODE_RGB2, COLOR_MODE_RGB3)
