"""Reading a recording back: its frames as they were carried, their ids, times and
attributes, and the metadata channels' updates (:class:`Recording`).

The simulator's replay reads recordings through this class; so can a user::

    from pvhpc.record import Recording
    with Recording("run.h5") as rec:
        print(rec.n_frames, rec.ids[:5], rec.codec)
        image = rec.image(0)          # decoded with pvhpc.codecs, no HDF5 plugin needed
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import codecs
from ..errors import UsageError
from .chunks import frame_bytes
from .layout import ATTRIBUTES, FRAMES, METADATA, PER_FRAME, PER_FRAME_FIELDS, import_h5py

__all__ = ["AttributeColumn", "MetadataLog", "Recording", "is_recording"]


@dataclass
class AttributeColumn:
    """One NTNDArray attribute over the frames: its value per frame and description."""

    name: str
    values: np.ndarray
    type_code: int
    descriptor: str
    source_type: int
    source: str


@dataclass
class MetadataLog:
    """The updates of one metadata channel, in the order they arrived."""

    name: str
    protocol: str
    values: np.ndarray
    time_stamps: np.ndarray
    arrivals: np.ndarray


def is_recording(path: str) -> bool:
    """Whether ``path`` is an HDF5 file written by ``pvhpc record`` (False if unreadable)."""
    try:
        h5py = import_h5py()
        with h5py.File(path, "r") as f:
            return "pvhpc_recording" in f.attrs
    except (ImportError, OSError):
        return False


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Recording:
    """An open recording (read-only); use as a context manager or call :meth:`close`.

    Per-frame arrays (``ids``, ``time_stamps``, ``data_time_stamps``, ``arrivals``)
    hold ``n_frames`` values each. Raises :class:`UsageError` naming ``option`` for
    a file that cannot be opened or was not written by ``pvhpc record``.
    """

    def __init__(self, path: str, option: str = "--input-file"):
        try:
            h5py = import_h5py()
        except ImportError as exc:
            raise UsageError(f"{option}: {path!r}: {exc}") from None
        try:
            self.file = h5py.File(path, "r")
        except OSError as exc:
            raise UsageError(f"{option}: cannot open {path!r} as HDF5: {exc}") from None
        try:
            self._read(path, option)
        except BaseException:
            self.file.close()
            raise

    def _read(self, path: str, option: str) -> None:
        f = self.file
        if "pvhpc_recording" not in f.attrs or FRAMES not in f:
            raise UsageError(f"{option}: {path!r} is not a recording made by pvhpc record")
        self.path = path
        self.frames = f[FRAMES]
        self.channel = _text(f["entry"].attrs.get("channel", ""))
        self.codec = _text(self.frames.attrs.get("codec", ""))
        self.shape: tuple[int, ...] = tuple(self.frames.shape[1:])
        self.dtype = self.frames.dtype
        self.nbytes = math.prod(self.shape) * self.dtype.itemsize
        per_frame = {name: f[f"{PER_FRAME}/{name}"][()] for name in PER_FRAME_FIELDS}
        # A file cut short (not closed) holds its frames up to the last flush.
        self.n_frames = int(min(self.frames.shape[0], *(len(v) for v in per_frame.values())))
        n = self.n_frames
        self.ids = per_frame["uniqueId"][:n]
        self.time_stamps = per_frame["timeStamp"][:n]
        self.data_time_stamps = per_frame["dataTimeStamp"][:n]
        self.arrivals = per_frame["arrivalTime"][:n]
        self.attributes: list[AttributeColumn] = []
        for dataset in f[ATTRIBUTES].values():
            a = dataset.attrs
            values = dataset[()][:n]
            if values.dtype.kind in "OS":
                values = np.array([_text(v) for v in values], dtype=object)
            self.attributes.append(
                AttributeColumn(
                    _text(a.get("NDAttrName", dataset.name.rsplit("/", 1)[-1])),
                    values,
                    int(a.get("pvType", -1)),
                    _text(a.get("NDAttrDescription", "")),
                    int(a.get("NDAttrSourceType", 0)),
                    _text(a.get("NDAttrSource", "")),
                )
            )
        self.metadata: list[MetadataLog] = []
        for group in f[METADATA].values():
            values = group["value"][()]
            if values.dtype.kind in "OS":
                values = np.array([_text(v) for v in values], dtype=object)
            self.metadata.append(
                MetadataLog(
                    _text(group.attrs.get("channel", group.name.rsplit("/", 1)[-1])),
                    _text(group.attrs.get("protocol", "pva")),
                    values,
                    group["timeStamp"][()],
                    group["arrivalTime"][()],
                )
            )

    def timing(self) -> str | None:
        """Which recorded times give the stream's timing: ``"timeStamp"`` (the source's
        own, when every frame has one and they never go back), else ``"arrivalTime"``
        (when the recorder took each frame), else None (one frame, or no usable time)."""
        if self.n_frames < 2:
            return None
        for name, times in (("timeStamp", self.time_stamps), ("arrivalTime", self.arrivals)):
            if np.all(times > 0) and np.all(np.diff(times) >= 0) and times[-1] > times[0]:
                return name
        return None

    def chunk(self, k: int) -> tuple[str, np.ndarray]:
        """Frame ``k``'s ``(codec, value bytes)`` as it was carried (no decoding)."""
        _, data = self.frames.id.read_direct_chunk((k,) + (0,) * len(self.shape))
        return frame_bytes(self.codec, data, self.nbytes)

    def image(self, k: int) -> np.ndarray:
        """Frame ``k``'s pixels, decoded, shaped as stored (NTNDArray dims reversed)."""
        codec, payload = self.chunk(k)
        if not codec:
            return payload.view(self.dtype).reshape(self.shape)
        n = math.prod(self.shape)
        return codecs.decompress(payload, codec, self.dtype, n).reshape(self.shape)

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> Recording:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
