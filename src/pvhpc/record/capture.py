"""What a recording keeps of a received frame or metadata update, read out of the
PvObject at once (:func:`capture_frame`, :func:`capture_metadata`).

A :class:`CapturedFrame` holds the frame's ``value`` bytes as a numpy view: pvaccess
gives every update a new pixel buffer, and the view keeps it alive, so captured
frames stay valid in a ring or a queue after the PvObject is reused.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..codecs import decompress
from ..ntnda import FIELD_DTYPES, get_codec_dtype, get_field
from .chunks import FILTERS

__all__ = [
    "Attribute",
    "CapturedFrame",
    "capture_frame",
    "capture_metadata",
    "read_attributes",
    "stamp_seconds",
]

#: One NTNDArray attribute: name, value, pvData scalar type code (-1: unknown),
#: descriptor, sourceType, source.
Attribute = tuple[str, Any, int, str, int, str]


class CapturedFrame:
    """One received frame as a recording stores it.

    ``shape`` and ``dtype`` are those of the uncompressed pixels in buffer order
    (NTNDArray dimensions reversed); ``payload`` is the ``value`` bytes as carried
    (compressed with ``codec``, or the pixels for ``codec == ''``); times are float
    seconds since the epoch (0.0 where the frame has none).
    """

    __slots__ = (
        "unique_id",
        "time_stamp",
        "data_time_stamp",
        "arrival",
        "codec",
        "dtype",
        "shape",
        "payload",
        "attributes",
    )

    def __init__(
        self,
        unique_id: int,
        time_stamp: float,
        data_time_stamp: float,
        arrival: float,
        codec: str,
        dtype: np.dtype,
        shape: tuple[int, ...],
        payload: np.ndarray,
        attributes: list[Attribute],
    ):
        self.unique_id = unique_id
        self.time_stamp = time_stamp
        self.data_time_stamp = data_time_stamp
        self.arrival = arrival
        self.codec = codec
        self.dtype = dtype
        self.shape = shape
        self.payload = payload
        self.attributes = attributes

    @property
    def nbytes(self) -> int:
        """Size of the uncompressed pixels."""
        return math.prod(self.shape) * self.dtype.itemsize

    @property
    def layout(self) -> tuple:
        """What a file's frames dataset is made for: (shape, dtype, codec)."""
        return (self.shape, self.dtype, self.codec)


def stamp_seconds(stamp: Any) -> float:
    """A ``time_t`` structure (dict) as float seconds; 0.0 for none."""
    if not stamp:
        return 0.0
    return stamp.get("secondsPastEpoch", 0) + stamp.get("nanoseconds", 0) * 1e-9


def _variant(value: Any) -> tuple[Any, int]:
    """The value of a variant union as pvaccess reads it, and its scalar type code."""
    if isinstance(value, tuple):
        data = value[0] if value else {}
        types = value[1] if len(value) > 1 else {}
        if isinstance(data, dict):
            if not data:
                return None, -1
            key, inner = next(iter(data.items()))
            kind = types.get(key) if isinstance(types, dict) else None
            try:
                code = int(kind) if kind is not None and not isinstance(kind, (list, dict)) else -1
            except (TypeError, ValueError):
                code = -1
            return inner, code
        return data, -1
    return value, -1


def capture_frame(pv: Any, arrival: float, unique_id: int | None = None) -> CapturedFrame:
    """Read a received NTNDArray into a :class:`CapturedFrame` (any thread).

    Raises ValueError for an object that is no NTNDArray frame (no ``value``, or a
    compressed frame whose uncompressed type is not given).
    """
    value = get_field(pv, "value", None)
    data = value[0] if isinstance(value, tuple) else value
    if not data:
        raise ValueError("the object has no NTNDArray value")
    field, array = next(iter(data.items()))
    array = np.asarray(array)
    try:
        codec = pv["codec.name"] or ""
    except Exception:  # noqa: BLE001 - a structure without codec: uncompressed
        codec = ""
    if codec:
        dtype = get_codec_dtype(pv)
        if dtype is None:
            raise ValueError(f"{codec}-compressed frame without its data type in codec.parameters")
    else:
        dtype = FIELD_DTYPES.get(field, array.dtype)
    dims = [int(d["size"]) for d in get_field(pv, "dimension", None) or []]
    shape = tuple(reversed(dims)) if dims else (array.size,)
    if codec and codec not in FILTERS:
        # No HDF5 filter decodes it (jpeg): kept as the pixels it decodes to.
        array = decompress(array.view(np.uint8), codec, dtype, math.prod(shape))
        codec = ""
    return CapturedFrame(
        int(pv["uniqueId"]) if unique_id is None else unique_id,
        stamp_seconds(get_field(pv, "timeStamp", None)),
        stamp_seconds(get_field(pv, "dataTimeStamp", None)),
        arrival,
        codec,
        np.dtype(dtype),
        shape,
        array.reshape(-1).view(np.uint8),
        read_attributes(pv),
    )


def read_attributes(pv: Any) -> list[Attribute]:
    """The frame's ``attribute`` list as :data:`Attribute` tuples, in its order."""
    attributes: list[Attribute] = []
    for attr in get_field(pv, "attribute", None) or []:
        inner, code = _variant(attr.get("value"))
        attributes.append(
            (
                str(attr.get("name", "")),
                inner,
                code,
                str(attr.get("descriptor", "") or ""),
                int(attr.get("sourceType", 0) or 0),
                str(attr.get("source", "") or ""),
            )
        )
    return attributes


def capture_metadata(pv: Any) -> tuple[Any, float]:
    """``(value, timeStamp seconds)`` of a metadata update (``value`` may be a
    scalar, a string or an array; the time 0.0 if the update has none)."""
    value = get_field(pv, "value", None)
    if isinstance(value, tuple):
        value, _ = _variant(value)
    return value, stamp_seconds(get_field(pv, "timeStamp", None))
