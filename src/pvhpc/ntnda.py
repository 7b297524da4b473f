"""NTNDArray ⇄ numpy: read images and metadata from areaDetector frames, build new frames.

Reading never copies pixel data unless it must: :func:`get_image` returns a
read-only numpy view of the frame's ``value`` buffer (pvaccess hands out views; the
view keeps the buffer alive on its own, so it stays valid after the frame object
is dropped). A compressed frame is decompressed into a new array. Building a frame
(:func:`make_frame`) copies the pixels once, into the frame's buffer; pvaccess
cannot adopt a numpy buffer.

Shapes: areaDetector lists dimensions fastest-varying first (``dimension[0]`` is x).
Images come back in numpy order:

===============  ======================  =====================
ColorMode        NTNDArray dimensions    numpy image
===============  ======================  =====================
0 Mono           ``[nx, ny]``            ``(ny, nx)``
2 RGB1 (pixel)   ``[3, nx, ny]``         ``(ny, nx, 3)``
3 RGB2 (row)     ``[nx, 3, ny]``         ``(ny, nx, 3)`` (strided view)
4 RGB3 (planar)  ``[nx, ny, 3]``         ``(ny, nx, 3)`` (strided view)
other / none     ``[d0, d1, …]``         ``(…, d1, d0)``
===============  ======================  =====================

``get_image(frame, native=True)`` skips the RGB2/RGB3 transpose and returns the
buffer's own order (``(ny, 3, nx)`` / ``(3, ny, nx)``).

All functions are pure and thread-safe, and accept any PvObject with NTNDArray
fields (a ``pvaccess.NtNdArray`` or a plain ``PvObject`` from a monitor, also one
cut down by a field request: missing fields read as empty/zero). They are also
static methods of :class:`pvhpc.processors.AdImageProcessor`, so a processor
subclass can call ``self.get_image(frame)``.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pvaccess as pva

__all__ = [
    "COLOR_MODE_MONO",
    "COLOR_MODE_RGB1",
    "COLOR_MODE_RGB2",
    "COLOR_MODE_RGB3",
    "DTYPE_FIELDS",
    "FIELD_DTYPES",
    "make_frame",
    "get_image",
    "get_frame_id",
    "get_dims",
    "get_color_mode",
    "get_attributes",
    "get_timestamp",
    "get_data_timestamp",
    "get_codec",
    "get_codec_dtype",
    "get_value_field",
    "make_timestamp",
    "scalar_type_code",
    "value_field_for",
    "get_field",
    "dimension_entry",
]

COLOR_MODE_MONO = 0
COLOR_MODE_RGB1 = 2
COLOR_MODE_RGB2 = 3
COLOR_MODE_RGB3 = 4

FIELD_DTYPES: dict[str, np.dtype] = {
    "booleanValue": np.dtype(np.bool_),
    "byteValue": np.dtype(np.int8),
    "ubyteValue": np.dtype(np.uint8),
    "shortValue": np.dtype(np.int16),
    "ushortValue": np.dtype(np.uint16),
    "intValue": np.dtype(np.int32),
    "uintValue": np.dtype(np.uint32),
    "longValue": np.dtype(np.int64),
    "ulongValue": np.dtype(np.uint64),
    "floatValue": np.dtype(np.float32),
    "doubleValue": np.dtype(np.float64),
}
"""NTNDArray ``value`` union field name → numpy dtype."""

DTYPE_FIELDS: dict[np.dtype, str] = {dtype: field for field, dtype in FIELD_DTYPES.items()}
"""numpy dtype → NTNDArray ``value`` union field name."""

# pvData ScalarType codes (pvaccess.BOOLEAN == 0 ... pvaccess.DOUBLE == 10). ADCore's
# NTNDArray converter stores the code of the uncompressed type in codec.parameters.
_FIELD_SCALAR_TYPES = {
    "booleanValue": pva.BOOLEAN,
    "byteValue": pva.BYTE,
    "ubyteValue": pva.UBYTE,
    "shortValue": pva.SHORT,
    "ushortValue": pva.USHORT,
    "intValue": pva.INT,
    "uintValue": pva.UINT,
    "longValue": pva.LONG,
    "ulongValue": pva.ULONG,
    "floatValue": pva.FLOAT,
    "doubleValue": pva.DOUBLE,
}
_CODE_DTYPES = {int(code): FIELD_DTYPES[f] for f, code in _FIELD_SCALAR_TYPES.items()}

_COLOR_MODE_BY_NAME = {"mono": 0, "rgb1": 2, "rgb2": 3, "rgb3": 4}

# Building the NTNDArray type costs ~90 us; copying an empty instance ~4 us.
_TEMPLATE = pva.NtNdArray()
# The same for NTNDArray types with extra fields, by the extra fields' structure.
_EXTRA_TEMPLATES: dict[str, pva.NtNdArray] = {}
_MAX_EXTRA_TEMPLATES = 64

# "Now" for a frame's timeStamp never repeats and never goes back within a process:
# a next stage's distributor tells updates apart by timeStamp, and two frames built
# within the clock's resolution (or across a clock step back) would look like one.
_stamp_lock = threading.Lock()
_last_stamp_ns = 0


def _fresh_ns() -> int:
    global _last_stamp_ns
    ns = time.time_ns()
    with _stamp_lock:
        if ns <= _last_stamp_ns:
            ns = _last_stamp_ns + 1
        _last_stamp_ns = ns
    return ns


def scalar_type_code(dtype: Any) -> int:
    """The pvData ScalarType code of a numpy dtype, as stored in ``codec.parameters``."""
    return int(_FIELD_SCALAR_TYPES[value_field_for(np.dtype(dtype))])


def value_field_for(dtype: np.dtype) -> str:
    try:
        return DTYPE_FIELDS[dtype.newbyteorder("=")]
    except KeyError:
        raise TypeError(
            f"NTNDArray has no value field for dtype {dtype}; use one of "
            + ", ".join(sorted(str(d) for d in DTYPE_FIELDS))
        ) from None


def get_field(frame: Any, name: str, default: Any = None) -> Any:
    """``frame[name]``, or ``default`` if the frame has no such field."""
    try:
        return frame[name]
    except (KeyError, pva.FieldNotFound):
        return default


def get_value_field(frame: Any) -> str:
    """Name of the selected ``value`` union field (``'ushortValue'``…), ``''`` if none."""
    value = get_field(frame, "value", ({},))
    data = value[0] if isinstance(value, tuple) else value
    return next(iter(data), "") if data else ""


def get_frame_id(frame: Any) -> int:
    """The frame's ``uniqueId`` (0 if the field is absent)."""
    return int(get_field(frame, "uniqueId", 0))


def get_dims(frame: Any) -> list[int]:
    """Dimension sizes in NTNDArray order (fastest-varying, x, first)."""
    return [int(d["size"]) for d in get_field(frame, "dimension", None) or []]


def get_attributes(frame: Any) -> dict[str, Any]:
    """The ``attribute`` list as ``{name: value}``; an empty variant reads as ``None``."""
    result: dict[str, Any] = {}
    for attr in get_field(frame, "attribute", None) or []:
        value = attr.get("value")
        if isinstance(value, tuple):
            value = value[0]
        if isinstance(value, dict):
            value = next(iter(value.values()), None) if value else None
        result[attr.get("name", "")] = value
    return result


def get_color_mode(frame: Any) -> int:
    """The ``ColorMode`` attribute (0, mono, if absent or not a number)."""
    for attr in get_field(frame, "attribute", None) or []:
        if attr.get("name") == "ColorMode":
            value = attr.get("value")
            if isinstance(value, tuple):
                value = value[0]
            if isinstance(value, dict):
                value = next(iter(value.values()), None) if value else None
            try:
                return int(value)
            except (TypeError, ValueError):
                return COLOR_MODE_MONO
    return COLOR_MODE_MONO


def _seconds(ts: Any) -> float:
    if not ts:
        return 0.0
    return float(ts.get("secondsPastEpoch", 0)) + float(ts.get("nanoseconds", 0)) * 1e-9


def get_timestamp(frame: Any) -> float:
    """``timeStamp`` as float seconds since the epoch (0.0 if absent)."""
    return _seconds(get_field(frame, "timeStamp", None))


def get_data_timestamp(frame: Any) -> float:
    """``dataTimeStamp`` (when the detector took the data) as float seconds."""
    return _seconds(get_field(frame, "dataTimeStamp", None))


def get_codec(frame: Any) -> str:
    """The codec name (``''`` for uncompressed data)."""
    try:
        return frame["codec.name"] or ""
    except (KeyError, pva.FieldNotFound):
        return ""


def get_codec_dtype(frame: Any) -> np.dtype | None:
    """The uncompressed data type of a compressed frame (from ``codec.parameters``),
    or None if the frame does not say."""
    params = (get_field(frame, "codec", None) or {}).get("parameters")
    if isinstance(params, tuple):
        params = params[0]
    if isinstance(params, dict) and params:
        params = next(iter(params.values()))
    if isinstance(params, dict):  # a structure in the variant, NT-like: its value field
        params = params.get("value")
    try:
        return _CODE_DTYPES.get(int(params))
    except (TypeError, ValueError):
        return None


def _flat_value(frame: Any, dtype: Any = None) -> np.ndarray:
    value = get_field(frame, "value", ({},))
    data = value[0] if isinstance(value, tuple) else value
    if not data:
        return np.empty(0, np.uint8)
    field, array = next(iter(data.items()))
    array = np.asarray(array)
    if field == "booleanValue":
        array = array.view(np.bool_)
    codec = get_codec(frame)
    if not codec:
        return array
    from . import codecs

    out_dtype = np.dtype(dtype) if dtype is not None else get_codec_dtype(frame)
    if out_dtype is None:
        raise ValueError(
            f"frame {get_frame_id(frame)} is {codec}-compressed but codec.parameters does "
            "not give the uncompressed data type; pass dtype="
        )
    size = int(get_field(frame, "uncompressedSize", 0) or 0)
    n_elements = size // out_dtype.itemsize if size else math.prod(get_dims(frame))
    return codecs.decompress(array.view(np.uint8), codec, out_dtype, n_elements)


def get_image(frame: Any, *, native: bool = False, dtype: Any = None) -> np.ndarray:
    """The frame's pixels as a numpy array shaped as in the module table.

    Uncompressed data comes back as a read-only view (no copy): call ``.copy()``
    to modify it. Compressed frames (``codec.name`` set) are decompressed into a new
    array; the uncompressed type comes from ``codec.parameters`` unless ``dtype`` is
    given. ``native=True`` returns RGB2/RGB3 data in buffer order, untransposed.
    Raises ``ValueError`` if the dimensions do not match the number of elements,
    :class:`pvhpc.codecs.CodecError` for undecodable data.
    """
    flat = _flat_value(frame, dtype)
    dims = get_dims(frame)
    if not dims:
        return flat
    shape = tuple(reversed(dims))
    if math.prod(shape) != flat.size:
        raise ValueError(
            f"frame {get_frame_id(frame)}: dimensions {dims} do not match "
            f"{flat.size} value elements"
        )
    image = flat.reshape(shape)
    mode = get_color_mode(frame) if len(dims) == 3 else COLOR_MODE_MONO
    if native or mode == COLOR_MODE_MONO:
        return image
    if mode == COLOR_MODE_RGB1 and dims[0] == 3:
        return image
    if mode == COLOR_MODE_RGB2 and dims[1] == 3:
        return image.transpose(0, 2, 1)
    if mode == COLOR_MODE_RGB3 and dims[2] == 3:
        return image.transpose(1, 2, 0)
    return image


def make_timestamp(value: Any = None) -> pva.PvTimeStamp:
    """A ``PvTimeStamp`` from float seconds, ``(seconds, nanoseconds)``, a dict or a
    ``PvTimeStamp``; ``None`` means now: strictly later than every earlier "now" of
    this process (from any thread), so frames stamped now are always told apart."""
    if isinstance(value, pva.PvTimeStamp):
        return value
    if value is None:
        ns = _fresh_ns()
        return pva.PvTimeStamp(ns // 1_000_000_000, ns % 1_000_000_000, 0)
    if isinstance(value, Mapping):
        return pva.PvTimeStamp(
            int(value.get("secondsPastEpoch", 0)),
            int(value.get("nanoseconds", 0)),
            int(value.get("userTag", 0)),
        )
    if isinstance(value, tuple):
        return pva.PvTimeStamp(int(value[0]), int(value[1]), 0)
    seconds = float(value)
    whole = int(seconds // 1)
    nanos = min(int(round((seconds - whole) * 1e9)), 999_999_999)
    return pva.PvTimeStamp(whole, nanos, 0)


def _pv_scalar(value: Any) -> Any:
    if isinstance(value, pva.PvObject):
        return value
    if isinstance(value, (bool, np.bool_)):
        return pva.PvBoolean(bool(value))
    if isinstance(value, np.integer):
        makers = {
            np.int8: pva.PvByte,
            np.uint8: pva.PvUByte,
            np.int16: pva.PvShort,
            np.uint16: pva.PvUShort,
            np.int32: pva.PvInt,
            np.uint32: pva.PvUInt,
            np.int64: pva.PvLong,
            np.uint64: pva.PvULong,
        }
        return makers[type(value)](int(value))
    if isinstance(value, int):
        return pva.PvInt(value) if -(2**31) <= value < 2**31 else pva.PvLong(value)
    if isinstance(value, np.float32):
        return pva.PvFloat(float(value))
    if isinstance(value, (float, np.floating)):
        return pva.PvDouble(float(value))
    return pva.PvString(str(value))


def _attribute_dicts(attributes: Any, color_mode: int | None) -> list[dict]:
    """Attributes as the dicts ``frame['attribute'] = …`` accepts, ColorMode first."""
    result: list[dict] = []
    if isinstance(attributes, Mapping):
        for name, value in attributes.items():
            entry = {"name": str(name)}
            if value is not None:  # None: an empty value, as an unconnected attribute has
                entry["value"] = _pv_scalar(value)
            result.append(entry)
    else:
        for attr in attributes or []:
            if isinstance(attr, pva.PvObject):  # NtAttribute: keep every field
                result.append({key: attr[key] for key in attr.keys()})
            else:
                entry = dict(attr)
                if entry.get("value") is None:
                    entry.pop("value", None)
                elif not isinstance(entry["value"], (tuple, pva.PvObject)):
                    entry["value"] = _pv_scalar(entry["value"])
                result.append(entry)
    if color_mode is not None:
        result = [a for a in result if a.get("name") != "ColorMode"]
        result.insert(0, {"name": "ColorMode", "value": pva.PvInt(int(color_mode))})
    return result


def make_frame(
    image: Any,
    unique_id: int = 0,
    *,
    color_mode: int | str | None = None,
    time_stamp: Any = None,
    data_time_stamp: Any = None,
    attributes: Mapping[str, Any] | Iterable | None = None,
    codec: str | None = None,
    codec_level: int | None = None,
    descriptor: str | None = None,
    like: Any = None,
    extra_fields: Any = None,
) -> pva.NtNdArray:
    """Build an NTNDArray frame from a numpy array.

    ``image`` is ``(ny, nx)`` for mono, ``(ny, nx, 3)`` for color, or any other shape
    (dimensions are the shape reversed). ``color_mode`` (0/2/3/4 or
    ``'mono'``/``'rgb1'``/``'rgb2'``/``'rgb3'``) defaults to RGB1 for ``(ny, nx, 3)``
    and mono otherwise; RGB2/RGB3 lay the pixels out row- or plane-interleaved.
    The ``value`` union field follows the dtype (``uint16`` → ``ushortValue``).

    ``timeStamp`` is set to ``time_stamp`` or, if not given, to *now*: a next stage's
    distributor tells updates apart by ``timeStamp``, so every published frame needs
    a fresh one. ``dataTimeStamp`` defaults to the same time. ``attributes``
    (``{name: value}``, or a list of ``NtAttribute`` or attribute dicts; a value of
    None is an empty one) get a ``ColorMode`` matching the layout, replacing any
    given one.
    ``codec`` (``lz4``/``bslz4``/``blosc``/``jpeg``) compresses the pixels as
    areaDetector's NDCodec does (see :mod:`pvhpc.codecs`; jpeg: uint8 mono or RGB1,
    ``codec_level`` the quality). ``like``: a frame whose attributes (all
    fields kept) and ``dataTimeStamp`` are carried over unless given here.
    ``extra_fields``: a ``PvObject`` whose fields are added to the NTNDArray structure,
    with their values (e.g. ``tileIndexX``/``tileIndexY`` of a tile; the stage's
    output record must then be declared as ``pva.NtNdArray({...})`` with the same
    fields). A field named like an NTNDArray field sets that field's value.

    Copies the pixels once (twice for a non-contiguous array or RGB2/RGB3). Pure,
    thread-safe. Raises ``TypeError`` for a dtype NTNDArray cannot hold,
    ``ValueError`` for a color image not shaped ``(ny, nx, 3)``.
    """
    array = np.asarray(image)
    field = value_field_for(array.dtype)
    if not array.dtype.isnative:  # pvaccess takes native byte order only
        array = array.astype(array.dtype.newbyteorder("="))
    mode = color_mode
    if isinstance(color_mode, str):
        mode = _COLOR_MODE_BY_NAME.get(color_mode.lower())
        if mode is None:
            raise ValueError(f"unknown color mode {color_mode!r} (mono, rgb1, rgb2, rgb3)")
    if mode is None:
        mode = COLOR_MODE_RGB1 if array.ndim == 3 and array.shape[2] == 3 else COLOR_MODE_MONO
    mode = int(mode)
    if mode in (COLOR_MODE_RGB1, COLOR_MODE_RGB2, COLOR_MODE_RGB3):
        if array.ndim != 3 or array.shape[2] != 3:
            raise ValueError(
                f"color mode {mode} needs an image shaped (ny, nx, 3), got {array.shape}"
            )
        if mode == COLOR_MODE_RGB2:
            array = array.transpose(0, 2, 1)
        elif mode == COLOR_MODE_RGB3:
            array = array.transpose(2, 0, 1)
    array = np.ascontiguousarray(array)  # pvaccess ignores strides: it copies raw memory
    dims = list(reversed(array.shape)) if array.ndim else [1]

    frame = _new_frame(extra_fields)
    nbytes = array.nbytes
    if codec:
        from . import codecs

        packed = codecs.compress(array, codec, level=codec_level)
        frame.setValue({"ubyteValue": packed})
        frame["codec"] = {"name": codec, "parameters": pva.PvInt(scalar_type_code(array.dtype))}
        frame["compressedSize"] = int(packed.size)
    else:
        flat = array.reshape(-1)
        frame.setValue({field: flat})
        frame["compressedSize"] = nbytes
    frame["uncompressedSize"] = nbytes
    frame["dimension"] = [dimension_entry(n) for n in dims]
    frame["uniqueId"] = int(unique_id)
    stamp = make_timestamp(time_stamp)
    frame.setTimeStamp(stamp)
    if data_time_stamp is None and like is not None and get_field(like, "dataTimeStamp", None):
        data_time_stamp = get_field(like, "dataTimeStamp")
    frame.setDataTimeStamp(stamp if data_time_stamp is None else make_timestamp(data_time_stamp))
    if attributes is None and like is not None:
        attributes = get_field(like, "attribute", None)
    frame["attribute"] = _attribute_dicts(attributes, mode)
    if descriptor is not None:
        frame["descriptor"] = descriptor
    if extra_fields is not None:
        frame.set(extra_fields.get())
    return frame


def _new_frame(extra_fields: Any = None) -> pva.NtNdArray:
    """An empty NtNdArray, with the fields of ``extra_fields`` added if given."""
    if extra_fields is None:
        return pva.NtNdArray(_TEMPLATE.copy())  # 25x cheaper than a new NtNdArray()
    if not isinstance(extra_fields, pva.PvObject):
        raise TypeError(
            f"extra fields must be a pvaccess.PvObject, not {type(extra_fields).__name__}"
        )
    structure = extra_fields.getStructureDict()
    key = repr(structure)
    template = _EXTRA_TEMPLATES.get(key)
    if template is None:
        template = pva.NtNdArray(structure)
        if len(_EXTRA_TEMPLATES) < _MAX_EXTRA_TEMPLATES:
            _EXTRA_TEMPLATES[key] = template
    return pva.NtNdArray(template.copy())


def dimension_entry(size: int) -> dict:
    """One NTNDArray ``dimension`` entry of ``size`` pixels (no offset, binning 1)."""
    return {"size": int(size), "offset": 0, "fullSize": int(size), "binning": 1, "reverse": False}
