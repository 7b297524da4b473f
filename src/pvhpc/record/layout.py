"""The recording file: one HDF5 file laid out as areaDetector's NDFileHDF5 and NeXus
tools expect (:class:`RecordFile` writes it).

::

    /                                   pvhpc_recording = 1 (format), creator
    /entry                              NXentry; channel, start_time, end_time
    /entry/data/data                    the frames (n, *frame shape), one chunk a frame,
                                        dtype of the pixels; attrs codec, channel
    /entry/instrument/detector/data     the same dataset (a hard link)
    /entry/instrument/NDAttributes/NAME one value per frame for each NTNDArray attribute
                                        (attrs NDAttrDescription, NDAttrSource,
                                        NDAttrSourceType, pvType)
    /entry/frames/uniqueId              int64, per frame
    /entry/frames/timeStamp             float64 s since the epoch, per frame
    /entry/frames/dataTimeStamp         float64 s, per frame
    /entry/frames/arrivalTime           float64 s, when the recorder took the frame
    /entry/metadata/NAME/value          one entry per update of a metadata channel
    /entry/metadata/NAME/timeStamp      float64 s (the update's own timestamp)
    /entry/metadata/NAME/arrivalTime    float64 s; attrs channel, protocol

The frame shape is the NTNDArray dimensions reversed (``(ny, nx)`` mono,
``(ny, nx, 3)`` RGB1), the pixels in the order the frame carried them. Frames are
written with direct chunk writes (see :mod:`.chunks`); the per-frame and metadata
values are kept in memory and written at every :meth:`RecordFile.flush`, after
which the file on disk is complete up to its last frame.
"""

from __future__ import annotations

import datetime
import os
from typing import Any

import numpy as np

from .._version import __version__
from .capture import Attribute, CapturedFrame
from .chunks import chunk_bytes, filter_options

__all__ = [
    "ATTRIBUTES",
    "AttributeColumns",
    "FORMAT_VERSION",
    "FRAMES",
    "METADATA",
    "PER_FRAME",
    "RecordFile",
    "import_h5py",
    "metadata_key",
]

FORMAT_VERSION = 1
FRAMES = "entry/data/data"
DETECTOR_DATA = "entry/instrument/detector/data"
ATTRIBUTES = "entry/instrument/NDAttributes"
PER_FRAME = "entry/frames"
METADATA = "entry/metadata"
PER_FRAME_FIELDS = ("uniqueId", "timeStamp", "dataTimeStamp", "arrivalTime")

# pvData scalar type codes, as pvaccess.ScalarType numbers them (BOOLEAN 0, BYTE 1,
# SHORT 2, INT 3, LONG 4, UBYTE 5, USHORT 6, UINT 7, ULONG 8, FLOAT 9, DOUBLE 10,
# STRING 11), and the numpy type that holds each.
_CODE_DTYPES = {
    0: np.bool_,
    1: np.int8,
    2: np.int16,
    3: np.int32,
    4: np.int64,
    5: np.uint8,
    6: np.uint16,
    7: np.uint32,
    8: np.uint64,
    9: np.float32,
    10: np.float64,
}
_STRING = 11


def import_h5py() -> Any:
    """h5py, or ImportError naming the extra to install."""
    try:
        import h5py
    except ImportError as exc:
        raise ImportError(
            "recording needs the 'h5py' package: pip install pvhpc[files] (or pip install h5py)"
        ) from exc
    return h5py


def metadata_key(name: str) -> str:
    """A channel or attribute name as an HDF5 member name: HDF5 refuses '/' and the
    names '.' and '..' (and '' names nothing)."""
    key = name.replace("/", "_")
    return "_" + key if key in ("", ".", "..") else key


def _free_key(group: Any, name: str) -> str:
    """:func:`metadata_key` of ``name``, with ``_2``, ``_3``… if another name of the
    group took it (``a/b`` and ``a_b``); the real name is kept in an attribute."""
    key = base = metadata_key(name)
    n = 2
    while key in group:
        key, n = f"{base}_{n}", n + 1
    return key


def _now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


def _type_code(value: Any, code: int) -> int:
    if code in _CODE_DTYPES or code == _STRING:
        return code
    if isinstance(value, (bool, np.bool_)):
        return 0
    if isinstance(value, (int, np.integer)):
        return 4
    if isinstance(value, (float, np.floating)):
        return 10
    return _STRING


class _Column:
    """Values of one per-frame attribute not yet written: (row, value) pairs."""

    def __init__(self, descriptor: str, source_type: int, source: str):
        self.code: int | None = None  # from the first value that is not empty
        self.descriptor, self.source_type, self.source = descriptor, source_type, source
        self.rows: list[int] = []
        self.values: list[Any] = []
        self.dataset: Any = None


class AttributeColumns:
    """The NTNDArray attributes of a file's frames: one dataset per attribute name in
    ``group``, one value per frame, written in steps (:meth:`write`).

    A column's type is that of its first value that is not empty (an areaDetector
    attribute whose source is not connected has an empty value). A row a frame gave
    no value for, or a value the column's type cannot hold, is 0 in an integer
    column, NaN in a floating-point one and ``""`` in a string one. ``group`` may be
    a callable that makes the group when the first column is written.
    """

    def __init__(self, h5py: Any, group: Any):
        self._h5py = h5py
        self._group = group
        self._columns: dict[str, _Column] = {}

    def add(self, row: int, attributes: list[Attribute]) -> None:
        """Keep the values of one frame, row ``row`` of the file."""
        columns = self._columns
        for name, value, code, descriptor, source_type, source in attributes:
            column = columns.get(name)
            if column is None:
                column = columns[name] = _Column(descriptor, source_type, source)
            if column.code is None and value is not None:
                column.code = _type_code(value, code)
            column.rows.append(row)
            column.values.append(value)

    def write(self, start: int, n: int, final: bool = False) -> None:
        """Write rows ``start`` to ``n`` - 1 of every column (the values kept since
        the last write, the other rows filled) and forget those values. A column
        with only empty values so far is written once a value gives its type, or,
        as floats, at the ``final`` write."""
        for name, column in self._columns.items():
            if column.dataset is None:
                if column.code is None and not final:
                    column.rows.clear()  # all empty: the fill, written with the first value
                    column.values.clear()
                    continue
                column.dataset = self._create(name, column, start)
            if n > start:
                self._write_rows(column, start, n)

    def _write_rows(self, column: _Column, start: int, n: int) -> None:
        dataset = column.dataset
        string = dataset.dtype.kind == "O"
        values = np.empty(n - start, dtype=object if string else dataset.dtype)
        values[:] = _fill(dataset.dtype)
        fit = _as_text if string else _fitter(dataset.dtype)
        for row, value in zip(column.rows, column.values):
            values[row - start] = fit(value)
        dataset.resize((n,))
        dataset[start:n] = values
        column.rows.clear()
        column.values.clear()

    def _create(self, name: str, column: _Column, start: int) -> Any:
        """The column's dataset, with its first ``start`` rows (frames before the
        attribute had a value) filled."""
        if callable(self._group):
            self._group = self._group()
        if column.code is None:
            column.code = 10  # never a value: a column of NaN
        dtype = self._h5py.string_dtype() if column.code == _STRING else _CODE_DTYPES[column.code]
        dataset = self._group.create_dataset(
            _free_key(self._group, name),
            shape=(start,),
            maxshape=(None,),
            chunks=(1024,),
            dtype=dtype,
        )
        if start:
            dataset[:start] = _fill(dataset.dtype)
        dataset.attrs.update(
            {
                "NDAttrName": name,
                "NDAttrDescription": column.descriptor,
                "NDAttrSource": column.source,
                "NDAttrSourceType": column.source_type,
                "pvType": column.code,
            }
        )
        return dataset


def _fill(dtype: np.dtype) -> Any:
    """What a column of ``dtype`` holds where a frame gave no value."""
    return "" if dtype.kind == "O" else (np.nan if dtype.kind == "f" else 0)


def _as_text(value: Any) -> str:
    return "" if value is None else str(value)


def _fitter(dtype: np.dtype):
    """``fit(value)``: ``value`` as a column of ``dtype`` holds it, or the fill."""
    floating, cast, fill = dtype.kind == "f", dtype.type, _fill(dtype)

    def fit(value: Any) -> Any:
        if floating:
            return cast(_number(value))
        if value is None:
            return fill
        try:
            if isinstance(value, (float, np.floating)) and not float(value).is_integer():
                return fill  # an integer column cannot hold 2.7
            return cast(int(value))
        except (TypeError, ValueError, OverflowError):
            return fill

    return fit


class _Channel:
    """Updates of one metadata channel not yet written."""

    def __init__(self, protocol: str):
        self.protocol = protocol
        self.values: list[Any] = []
        self.stamps: list[float] = []
        self.arrivals: list[float] = []
        self.numeric: bool | None = None
        self.group: Any = None
        self.n_written = 0


class RecordFile:
    """One recording file being written; not thread-safe (the recorder holds a lock).

    Made for frames of one ``layout`` (shape, dtype, codec, from the first frame);
    :meth:`append` refuses others with ValueError. ``OSError`` from HDF5 (a full
    disk, a removed directory) reaches the caller; :meth:`close` then still tries to
    leave the file readable up to its last flush.
    """

    def __init__(self, path: str, first: CapturedFrame, channel: str, metadata: dict[str, str]):
        h5py = import_h5py()
        self.path = path
        self.layout = first.layout
        self.n_frames = 0
        self.n_flushed = 0
        self.stored_bytes = 0
        self.first_id: int | None = None
        self.last_id: int | None = None
        self.closed = False
        self._h5py = h5py
        self._per_frame: list[tuple[int, float, float, float]] = []
        self._channels = {name: _Channel(protocol) for name, protocol in metadata.items()}
        shape, dtype, codec = self.layout
        self._nbytes = first.nbytes
        self._itemsize = dtype.itemsize
        self._zeros = (0,) * len(shape)
        self.file = h5py.File(path, "w")
        try:
            f = self.file
            f.attrs["pvhpc_recording"] = FORMAT_VERSION
            f.attrs["creator"] = f"pvhpc record {__version__}"
            f.attrs["default"] = "entry"
            entry = f.create_group("entry")
            entry.attrs.update(
                {
                    "NX_class": "NXentry",
                    "default": "data",
                    "channel": channel,
                    "start_time": _now_iso(),
                }
            )
            data = entry.create_group("data")
            data.attrs.update({"NX_class": "NXdata", "signal": "data"})
            self.frames = data.create_dataset(
                "data",
                shape=(0, *shape),
                maxshape=(None, *shape),
                chunks=(1, *shape),
                dtype=dtype,
                **filter_options(codec, dtype.itemsize, self._nbytes),
            )
            self.frames.attrs.update({"codec": codec, "channel": channel})
            if len(shape) >= 2:
                self.frames.attrs["interpretation"] = "image"
            instrument = entry.create_group("instrument")
            instrument.attrs["NX_class"] = "NXinstrument"
            detector = instrument.create_group("detector")
            detector.attrs["NX_class"] = "NXdetector"
            detector["data"] = self.frames
            instrument.create_group("NDAttributes").attrs["NX_class"] = "NXcollection"
            frames = entry.create_group("frames")
            frames.attrs["NX_class"] = "NXcollection"
            self._per_frame_sets = [
                frames.create_dataset(
                    name,
                    shape=(0,),
                    maxshape=(None,),
                    chunks=(4096,),
                    dtype=np.int64 if name == "uniqueId" else np.float64,
                )
                for name in PER_FRAME_FIELDS
            ]
            entry.create_group("metadata").attrs["NX_class"] = "NXcollection"
        except BaseException:
            self.file.close()
            raise
        self._attributes = AttributeColumns(h5py, self.file[ATTRIBUTES])
        self._frame_id = self.frames.id
        self._extent = list(self.frames.shape)

    # -- frames (hot path) ---------------------------------------------------------

    def append(self, frame: CapturedFrame) -> int:
        """Write one frame's chunk and keep its per-frame values; return the bytes stored."""
        if frame.layout != self.layout:
            raise ValueError(f"frame {frame.unique_id} has another shape, type or codec")
        chunk = chunk_bytes(frame.codec, frame.payload, self._nbytes, self._itemsize)
        row = self.n_frames
        self._extent[0] = row + 1
        self._frame_id.set_extent(tuple(self._extent))
        self._frame_id.write_direct_chunk((row, *self._zeros), chunk, 0)
        self.n_frames = row + 1
        self._per_frame.append(
            (frame.unique_id, frame.time_stamp, frame.data_time_stamp, frame.arrival)
        )
        if frame.attributes:
            self._attributes.add(row, frame.attributes)
        if self.first_id is None:
            self.first_id = frame.unique_id
        self.last_id = frame.unique_id
        self.stored_bytes += chunk.size
        return int(chunk.size)

    def add_metadata(self, name: str, value: Any, stamp: float, arrival: float) -> None:
        """Keep one update of metadata channel ``name`` (a new name is added as ``pva``)."""
        channel = self._channels.get(name)
        if channel is None:
            channel = self._channels[name] = _Channel("pva")
        if channel.numeric is None and value is not None:
            channel.numeric = isinstance(value, (int, float, np.integer, np.floating, np.bool_))
        channel.values.append(value)
        channel.stamps.append(stamp)
        channel.arrivals.append(arrival)

    # -- flush and close --------------------------------------------------------------

    def flush(self, final: bool = False) -> None:
        """Write what is kept in memory and flush the file: on disk, it is now complete
        up to its last frame (``final``: the last flush, before closing)."""
        n, start = self.n_frames, self.n_flushed
        if n > start:
            rows = np.array(self._per_frame, dtype=np.float64).T if self._per_frame else None
            ids = np.array([p[0] for p in self._per_frame], dtype=np.int64)
            for k, dataset in enumerate(self._per_frame_sets):
                dataset.resize((n,))
                dataset[start:n] = ids if k == 0 else rows[k]
            self._per_frame.clear()
        self._attributes.write(start, n, final)
        for name, channel in self._channels.items():
            self._write_channel(name, channel)
        self.n_flushed = n
        self.file.flush()

    def _write_channel(self, name: str, channel: _Channel) -> None:
        if not channel.values and channel.group is not None:
            return
        h5py = self._h5py
        if channel.group is None:
            parent = self.file[METADATA]
            group = parent.create_group(_free_key(parent, name))
            group.attrs.update({"NX_class": "NXlog", "channel": name, "protocol": channel.protocol})
            numeric = channel.numeric is not False
            group.create_dataset(
                "value",
                shape=(0,),
                maxshape=(None,),
                chunks=(1024,),
                dtype=np.float64 if numeric else h5py.string_dtype(),
            )
            for field in ("timeStamp", "arrivalTime"):
                group.create_dataset(
                    field, shape=(0,), maxshape=(None,), chunks=(1024,), dtype=np.float64
                )
            channel.group = group
        group = channel.group
        start, n = channel.n_written, channel.n_written + len(channel.values)
        if n == start:
            return
        values = group["value"]
        if values.dtype.kind == "f":
            column = np.array([_number(v) for v in channel.values], dtype=np.float64)
        else:
            column = np.array(["" if v is None else str(v) for v in channel.values], dtype=object)
        for field, data in (
            ("value", column),
            ("timeStamp", channel.stamps),
            ("arrivalTime", channel.arrivals),
        ):
            group[field].resize((n,))
            group[field][start:n] = data
        channel.n_written = n
        channel.values.clear()
        channel.stamps.clear()
        channel.arrivals.clear()

    def close(self) -> None:
        """Flush, note the end, close. Safe to call twice. If the flush fails (disk
        full), the file is still closed, readable as of the last successful flush,
        and the error is raised."""
        if self.closed:
            return
        self.closed = True
        try:
            self.flush(final=True)
            entry = self.file["entry"]
            entry.attrs["end_time"] = _now_iso()
            entry.attrs["nFrames"] = self.n_frames
        finally:
            self.file.close()

    @property
    def size_on_disk(self) -> int:
        """The file's size now (what HDF5 has written so far)."""
        try:
            return os.path.getsize(self.path)
        except OSError:
            return 0


def _number(value: Any) -> float:
    """A metadata or attribute value as a number (NaN if it is none)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")
