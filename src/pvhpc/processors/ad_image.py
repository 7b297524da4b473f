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
cut down by a field request: missing fields read as empty/zero). They are module
functions and also static methods of :class:`AdImageProcessor`, so a processor
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

from ..processor import UserDataProcessor

__all__ = [
    "AdImageProcessor",
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
    "get_value_field",
    "make_timestamp",
    "scalar_type_code",
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
    return int(_FIELD_SCALAR_TYPES[_value_field_for(np.dtype(dtype))])


def _value_field_for(dtype: np.dtype) -> str:
    try:
        return DTYPE_FIELDS[dtype.newbyteorder("=")]
    except KeyError:
        raise TypeError(
            f"NTNDArray has no value field for dtype {dtype}; use one of "
            + ", ".join(sorted(str(d) for d in DTYPE_FIELDS))
        ) from None


def _field(frame: Any, name: str, default: Any = None) -> Any:
    try:
        return frame[name]
    except (KeyError, pva.FieldNotFound):
        return default


def get_value_field(frame: Any) -> str:
    """Name of the selected ``value`` union field (``'ushortValue'``…), ``''`` if none."""
    value = _field(frame, "value", ({},))
    data = value[0] if isinstance(value, tuple) else value
    return next(iter(data), "") if data else ""


def get_frame_id(frame: Any) -> int:
    """The frame's ``uniqueId`` (0 if the field is absent)."""
    return int(_field(frame, "uniqueId", 0))


def get_dims(frame: Any) -> list[int]:
    """Dimension sizes in NTNDArray order (fastest-varying, x, first)."""
    return [int(d["size"]) for d in _field(frame, "dimension", None) or []]


def get_attributes(frame: Any) -> dict[str, Any]:
    """The ``attribute`` list as ``{name: value}``; an empty variant reads as ``None``."""
    result: dict[str, Any] = {}
    for attr in _field(frame, "attribute", None) or []:
        value = attr.get("value")
        if isinstance(value, tuple):
            value = value[0]
        if isinstance(value, dict):
            value = next(iter(value.values()), None) if value else None
        result[attr.get("name", "")] = value
    return result


def get_color_mode(frame: Any) -> int:
    """The ``ColorMode`` attribute (0, mono, if absent or not a number)."""
    for attr in _field(frame, "attribute", None) or []:
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
    return _seconds(_field(frame, "timeStamp", None))


def get_data_timestamp(frame: Any) -> float:
    """``dataTimeStamp`` (when the detector took the data) as float seconds."""
    return _seconds(_field(frame, "dataTimeStamp", None))


def get_codec(frame: Any) -> str:
    """The codec name (``''`` for uncompressed data)."""
    try:
        return frame["codec.name"] or ""
    except (KeyError, pva.FieldNotFound):
        return ""


def _codec_dtype(frame: Any) -> np.dtype | None:
    params = (_field(frame, "codec", None) or {}).get("parameters")
    if isinstance(params, tuple):
        params = params[0]
    if isinstance(params, dict) and params:
        params = next(iter(params.values()))
    try:
        return _CODE_DTYPES.get(int(params))
    except (TypeError, ValueError):
        return None


def _flat_value(frame: Any, dtype: Any = None) -> np.ndarray:
    value = _field(frame, "value", ({},))
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
    from .. import codecs

    out_dtype = np.dtype(dtype) if dtype is not None else _codec_dtype(frame)
    if out_dtype is None:
        raise ValueError(
            f"frame {get_frame_id(frame)} is {codec}-compressed but codec.parameters does "
            "not give the uncompressed data type; pass dtype="
        )
    size = int(_field(frame, "uncompressedSize", 0) or 0)
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
            result.append({"name": str(name), "value": _pv_scalar(value)})
    else:
        for attr in attributes or []:
            if isinstance(attr, pva.PvObject):  # NtAttribute: keep every field
                result.append({key: attr[key] for key in attr.keys()})
            else:
                entry = dict(attr)
                if not isinstance(entry.get("value"), (tuple, pva.PvObject)):
                    entry["value"] = _pv_scalar(entry.get("value"))
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
    (``{name: value}``, or a list of ``NtAttribute`` or attribute dicts) get a
    ``ColorMode`` matching the layout, replacing any given one.
    ``codec`` (``lz4``/``bslz4``/``blosc``) compresses the pixels as areaDetector's
    NDCodec does (see :mod:`pvhpc.codecs`). ``like``: a frame whose attributes (all
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
    field = _value_field_for(array.dtype)
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
        from .. import codecs

        packed = codecs.compress(array, codec, level=codec_level)
        frame.setValue({"ubyteValue": packed})
        frame["codec"] = {"name": codec, "parameters": pva.PvInt(scalar_type_code(array.dtype))}
        frame["compressedSize"] = int(packed.size)
    else:
        flat = array.reshape(-1)
        frame.setValue({field: flat})
        frame["compressedSize"] = nbytes
    frame["uncompressedSize"] = nbytes
    frame["dimension"] = [_dimension(n) for n in dims]
    frame["uniqueId"] = int(unique_id)
    stamp = make_timestamp(time_stamp)
    frame.setTimeStamp(stamp)
    if data_time_stamp is None and like is not None and _field(like, "dataTimeStamp", None):
        data_time_stamp = _field(like, "dataTimeStamp")
    frame.setDataTimeStamp(stamp if data_time_stamp is None else make_timestamp(data_time_stamp))
    if attributes is None and like is not None:
        attributes = _field(like, "attribute", None)
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


def _precompressed_frame(
    unique_id: int,
    payload: Any,
    nx: int,
    ny: int,
    dtype: Any,
    codec: str,
    extra_fields: Any,
) -> pva.NtNdArray:
    """A mono frame of ``nx`` x ``ny`` pixels of ``dtype`` whose data, ``payload``, is
    already compressed with ``codec``."""
    out_dtype = np.dtype(dtype)  # None -> float64, as numpy (and PvaPy) have it
    _value_field_for(out_dtype)  # a type NTNDArray can hold
    if isinstance(payload, (bytes, bytearray, memoryview)):
        packed = np.frombuffer(payload, np.uint8)
    else:
        packed = np.ascontiguousarray(payload).reshape(-1).view(np.uint8)
    frame = make_frame(packed, unique_id, color_mode=COLOR_MODE_MONO, extra_fields=extra_fields)
    frame["dimension"] = [_dimension(nx), _dimension(ny)]
    frame["codec"] = {"name": codec, "parameters": pva.PvInt(scalar_type_code(out_dtype))}
    frame["compressedSize"] = int(packed.size)
    frame["uncompressedSize"] = nx * ny * out_dtype.itemsize
    if extra_fields is not None:
        frame.set(extra_fields.get())
    return frame


def _dimension(size: int) -> dict:
    return {"size": int(size), "offset": 0, "fullSize": int(size), "binning": 1, "reverse": False}


def _image_2d(image: Any) -> np.ndarray:
    array = np.asarray(image)
    if array.ndim != 2:
        raise ValueError(f"a 2D image (ny, nx) is needed, got shape {array.shape}")
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    return array


def _invalid(frame_id: int, dims: list[int], mode: int) -> pva.InvalidArgument:
    return pva.InvalidArgument(
        f"frame {frame_id}: dimensions {dims} do not fit color mode {mode} "
        "(mono [nx, ny], RGB1 [3, nx, ny], RGB2 [nx, 3, ny], RGB3 [nx, ny, 3])"
    )


class AdImageProcessor(UserDataProcessor):
    """Base class for processors of areaDetector (NTNDArray) frames; as is, a passthrough.

    Adds the numpy helpers of this module as static methods (``self.get_image(frame)``,
    ``self.make_frame(image, unique_id, like=frame)``…) and counts the frames and
    bytes it passes through. Subclasses override ``process`` as usual; ``process``
    runs in the runtime's processing thread, one call at a time.

    PvaPy's image helpers are here too, under their PvaPy names and as class methods
    (``reshapeNtNdArray``, ``generateNtNdArray2D``, ``replaceNtNdArrayImage2D``,
    ``getNtNdArrayDataFieldKey``), so a processor written against
    ``pvapy.hpc.adImageProcessor.AdImageProcessor`` runs with only its import
    changed. Like the other helpers they are pure (``replaceNtNdArrayImage2D``
    changes only the frame it is given) and safe from any thread.
    """

    make_frame = staticmethod(make_frame)
    get_image = staticmethod(get_image)
    get_frame_id = staticmethod(get_frame_id)
    get_dims = staticmethod(get_dims)
    get_color_mode = staticmethod(get_color_mode)
    get_attributes = staticmethod(get_attributes)
    get_timestamp = staticmethod(get_timestamp)
    get_data_timestamp = staticmethod(get_data_timestamp)
    get_codec = staticmethod(get_codec)
    get_value_field = staticmethod(get_value_field)
    make_timestamp = staticmethod(make_timestamp)

    # -- PvaPy's names (camelCase on purpose: users' processor files call them) ------

    @classmethod
    def reshapeNtNdArray(cls, ntNdArray: Any) -> tuple:
        """``(frameId, image, nx, ny, nz, colorMode, fieldKey)`` of a frame.

        ``image`` is :func:`get_image`'s: ``(ny, nx)`` for mono, ``(ny, nx, 3)`` for
        the three RGB modes (a read-only view when uncompressed; decompressed when
        ``codec.name`` is set). ``nz`` is ``None`` for mono and 3 for color;
        ``colorMode`` is 0 for every 2D frame; ``fieldKey`` is the ``value`` union
        field as it travels (``'ubyteValue'`` for compressed data). A frame without
        data gives ``(frameId, None, None, None, None, None, None)``. Raises
        ``pvaccess.InvalidArgument`` if the dimensions are neither 2 nor 3 of a
        color layout matching the ``ColorMode`` attribute, ``ValueError`` if they
        do not match the number of elements.
        """
        frame_id = get_frame_id(ntNdArray)
        field_key = get_value_field(ntNdArray)
        if not field_key:
            return (frame_id, None, None, None, None, None, None)
        dims = get_dims(ntNdArray)
        nz = None
        if len(dims) == 2:
            mode = COLOR_MODE_MONO
            nx, ny = dims
        elif len(dims) == 3:
            mode = get_color_mode(ntNdArray)
            if mode == COLOR_MODE_RGB1 and dims[0] == 3:
                nz, nx, ny = dims
            elif mode == COLOR_MODE_RGB2 and dims[1] == 3:
                nx, nz, ny = dims
            elif mode == COLOR_MODE_RGB3 and dims[2] == 3:
                nx, ny, nz = dims
            else:
                raise _invalid(frame_id, dims, mode)
        else:
            raise _invalid(frame_id, dims, get_color_mode(ntNdArray))
        return (frame_id, get_image(ntNdArray), nx, ny, nz, mode, field_key)

    @classmethod
    def getNtNdArrayDataFieldKey(cls, image: Any) -> str | None:
        """The ``value`` union field for the array's dtype (``'ushortValue'``…), or
        ``None`` for a dtype NTNDArray cannot hold (``float16``, complex…)."""
        try:
            return _value_field_for(np.asarray(image).dtype)
        except TypeError:
            return None

    @classmethod
    def generateNtNdArray2D(
        cls,
        imageId: int,
        image: Any,
        nx: int | None = None,
        ny: int | None = None,
        dtype: Any = None,
        compressorName: str | None = None,
        extraFieldsPvObject: Any = None,
    ) -> pva.NtNdArray:
        """A new mono NTNDArray frame with ``uniqueId`` ``imageId``.

        ``image`` is a 2D array ``(ny, nx)``; ``nx``, ``ny`` and ``dtype`` are
        ignored then (the array says them). With ``compressorName`` and ``nx``/``ny``
        given, as in PvaPy, ``image`` holds data already compressed with that codec
        (bytes or a numpy array, taken as raw bytes) and ``dtype`` is the type of the
        uncompressed pixels (``None`` means float64, numpy's default, as in PvaPy);
        with ``compressorName`` but without ``nx``/``ny``, the 2D ``image`` is
        compressed here (``lz4``, ``bslz4``, ``blosc``). ``extraFieldsPvObject``:
        fields added to the structure, with their values (see :func:`make_frame`).
        The frame carries a fresh ``timeStamp`` (``dataTimeStamp`` the same) and a
        ``ColorMode`` attribute of 0. Raises ``ValueError`` for an image not 2D.
        """
        if compressorName and nx is not None and ny is not None:
            return _precompressed_frame(
                imageId, image, int(nx), int(ny), dtype, compressorName, extraFieldsPvObject
            )
        array = _image_2d(image)
        if compressorName and dtype is not None and np.dtype(dtype) != array.dtype:
            raise ValueError(
                f"dtype {np.dtype(dtype)} given for a {array.dtype} image to compress; "
                "give nx and ny as well if the image is already compressed"
            )
        return make_frame(
            array,
            imageId,
            color_mode=COLOR_MODE_MONO,
            codec=compressorName or None,
            extra_fields=extraFieldsPvObject,
        )

    @classmethod
    def replaceNtNdArrayImage2D(
        cls,
        ntNdArray: Any,
        imageId: int,
        image: Any,
        extraFieldsPvObject: Any = None,
    ) -> Any:
        """Put a 2D image ``(ny, nx)`` into an existing frame, in place; return the frame.

        Sets ``value`` (the field follows the new image's dtype), ``dimension``,
        ``uniqueId``, the sizes and a fresh ``timeStamp``; the data is stored
        uncompressed (``codec.name`` cleared) and a ``ColorMode`` other than mono is
        set to mono. Attributes, ``descriptor`` and ``dataTimeStamp`` (when the
        detector took the data) are kept. ``extraFieldsPvObject`` sets the values of
        fields the frame already has (``pvaccess.FieldNotFound`` otherwise). Copies
        the pixels once. Raises ``ValueError`` for an image not 2D.
        """
        array = np.ascontiguousarray(_image_2d(image))
        field = _value_field_for(array.dtype)
        ny, nx = array.shape
        ntNdArray["value"] = {field: array.reshape(-1)}
        ntNdArray["dimension"] = [_dimension(nx), _dimension(ny)]
        ntNdArray["uniqueId"] = int(imageId)
        ntNdArray["compressedSize"] = ntNdArray["uncompressedSize"] = int(array.nbytes)
        if get_codec(ntNdArray):
            ntNdArray["codec.name"] = ""
        stamp = make_timestamp()
        ntNdArray["timeStamp"] = {
            "secondsPastEpoch": stamp.getSecondsPastEpoch(),
            "nanoseconds": stamp.getNanoseconds(),
            "userTag": 0,
        }
        if get_color_mode(ntNdArray) != COLOR_MODE_MONO:
            attributes = ntNdArray["attribute"]
            for attr in attributes:
                if attr.get("name") == "ColorMode":
                    attr["value"] = pva.PvInt(COLOR_MODE_MONO)
            ntNdArray["attribute"] = attributes
        if extraFieldsPvObject is not None:
            ntNdArray.set(extraFieldsPvObject.get())
        return ntNdArray

    def __init__(self, configDict: dict | None = None) -> None:
        super().__init__(configDict)
        self.nFramesProcessed = 0
        self.nBytesProcessed = 0

    def process(self, pvObject: Any) -> Any:
        """Count the frame and its ``uncompressedSize``, then republish it unchanged."""
        self.nFramesProcessed += 1
        self.nBytesProcessed += int(_field(pvObject, "uncompressedSize", 0) or 0)
        self.updateOutputChannel(pvObject)
        return pvObject

    def resetStats(self) -> None:
        """Zero the frame and byte counters."""
        self.nFramesProcessed = 0
        self.nBytesProcessed = 0

    def getStats(self) -> dict:
        """``nFramesProcessed`` and ``nBytesProcessed`` (uncompressed bytes)."""
        return {"nFramesProcessed": self.nFramesProcessed, "nBytesProcessed": self.nBytesProcessed}

    def getStatsPvaTypes(self) -> dict:
        """Both counters are ``ULONG``."""
        return {"nFramesProcessed": pva.ULONG, "nBytesProcessed": pva.ULONG}
