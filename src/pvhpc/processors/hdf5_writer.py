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

The image dataset is ``(n, ny, nx)`` for mono frames and ``(n, ny, nx, 3)`` for RGB,
of the frames' own dtype, one chunk per frame; compressed frames are stored
decompressed. A file holds frames of one shape and type: a frame that differs
closes the current file and starts the next one. Every file is closed on
``stop()``, its datasets trimmed to the frames it holds, and carries the
attributes ``nImages`` and ``processorId`` on the image dataset. Files are written
under their final name; an existing file of that name is replaced.
"""

from __future__ import annotations

import os
import posixpath
import threading
import time
from typing import Any

import numpy as np
import pvaccess as pva

from ..processor import UserDataProcessor
from ..record.capture import read_attributes
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


class _OpenFile:
    """One HDF5 file being filled; owned by the processing thread.

    Images go straight to their chunk (one chunk per frame, no filter pipeline:
    twice as fast as slice assignment for small frames). Ids and timestamps are
    kept in memory and written when the file is closed.
    """

    def __init__(
        self,
        h5py: Any,
        path: str,
        dataset: str,
        capacity: int,
        image: np.ndarray,
        attribute_group: str,
    ):
        self.path = path
        self.shape = image.shape
        self.dtype = image.dtype
        self.count = 0
        self.capacity = capacity
        self.meta: list[tuple[int, float, float]] = []
        self._zeros = (0,) * image.ndim
        initial = capacity if capacity > 0 else 64
        self.file = h5py.File(path, "w")
        try:
            self.images = self.file.create_dataset(
                dataset,
                shape=(initial, *image.shape),
                maxshape=(capacity if capacity > 0 else None, *image.shape),
                dtype=image.dtype,
                chunks=(1, *image.shape) if image.size else True,
            )
        except BaseException:
            self.file.close()
            raise
        self._direct = image.size > 0
        self.attributes = (
            AttributeColumns(h5py, lambda: self.file.require_group(attribute_group))
            if attribute_group
            else None
        )
        self._attributes_written = 0

    def append(
        self, image: np.ndarray, frame_id: int, stamp: float, data_stamp: float, attributes: list
    ) -> None:
        i = self.count
        if i >= self.images.shape[0]:
            self.images.resize(2 * i, axis=0)
        if self._direct:
            self.images.id.write_direct_chunk((i, *self._zeros), np.ascontiguousarray(image))
        else:
            self.images[i] = image
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
        self._settings: tuple = ()
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
            if group in (dataset, posixpath.dirname(dataset)) or group.startswith(dataset + "/"):
                raise ValueError(
                    f"attributeGroup {group!r}: the images and the datasets beside them are "
                    f"in {posixpath.dirname(dataset)!r}; give the attributes a group of "
                    'their own (or "" for none)'
                )
        directory = prepare_directory(directory)
        with self._lock:
            self.outputDirectory = directory
            self.outputFileNameFormat = name_format
            self.nImagesPerFile = n_images
            self.datasetName = dataset
            self.attributeGroup = group
            self._settings = (directory, name_format, n_images, dataset, group)

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
        }
        if keys & set(configDict):
            self._apply(configDict)

    def _open(self, image: np.ndarray) -> _OpenFile:
        with self._lock:
            directory, name_format, n_images, dataset, group = self._settings
        self.outputFileId += 1
        name = name_format.format(outputFileId=self.outputFileId, processorId=self.processorId)
        path = os.path.join(directory, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self.logger.debug("opening %s", path)
        return _OpenFile(self._h5py, path, dataset, n_images, image, group)

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
        try:
            image = get_image(pvObject)
        except Exception:
            self.nErrors += 1
            raise
        try:
            current = self._file
            if current is not None and (
                current.shape != image.shape or current.dtype != image.dtype
            ):
                self.logger.info(
                    "frame %s is %s %s, file %s holds %s %s: starting a new file",
                    get_frame_id(pvObject),
                    image.dtype,
                    image.shape,
                    current.path,
                    current.dtype,
                    current.shape,
                )
                self._close()
                current = None
            if current is None:
                current = self._file = self._open(image)
            current.append(
                image,
                get_frame_id(pvObject),
                get_timestamp(pvObject),
                get_data_timestamp(pvObject),
                read_attributes(pvObject) if current.attributes is not None else (),
            )
            self.nFramesWritten += 1
            self.nImageBytesWritten += image.nbytes
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
