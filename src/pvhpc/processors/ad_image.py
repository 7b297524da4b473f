"""The processor base class for areaDetector (NTNDArray) frames, with the image helpers.

:class:`AdImageProcessor` carries the NTNDArray ⇄ numpy helpers of
:mod:`pvhpc.ntnda` as static methods, and PvaPy's helper names as class methods.
The helpers are re-exported here, where processor files have always found them
(``from pvhpc.processors.ad_image import get_image, make_frame``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pvaccess as pva

from ..ntnda import (
    COLOR_MODE_MONO,
    COLOR_MODE_RGB1,
    COLOR_MODE_RGB2,
    COLOR_MODE_RGB3,
    DTYPE_FIELDS,
    FIELD_DTYPES,
    dimension_entry,
    get_attributes,
    get_codec,
    get_color_mode,
    get_data_timestamp,
    get_dims,
    get_field,
    get_frame_id,
    get_image,
    get_timestamp,
    get_value_field,
    make_frame,
    make_timestamp,
    scalar_type_code,
    value_field_for,
)
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
    value_field_for(out_dtype)  # a type NTNDArray can hold
    if isinstance(payload, (bytes, bytearray, memoryview)):
        packed = np.frombuffer(payload, np.uint8)
    else:
        packed = np.ascontiguousarray(payload).reshape(-1).view(np.uint8)
    frame = make_frame(packed, unique_id, color_mode=COLOR_MODE_MONO, extra_fields=extra_fields)
    frame["dimension"] = [dimension_entry(nx), dimension_entry(ny)]
    frame["codec"] = {"name": codec, "parameters": pva.PvInt(scalar_type_code(out_dtype))}
    frame["compressedSize"] = int(packed.size)
    frame["uncompressedSize"] = nx * ny * out_dtype.itemsize
    if extra_fields is not None:
        frame.set(extra_fields.get())
    return frame


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
            return value_field_for(np.asarray(image).dtype)
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
        field = value_field_for(array.dtype)
        ny, nx = array.shape
        ntNdArray["value"] = {field: array.reshape(-1)}
        ntNdArray["dimension"] = [dimension_entry(nx), dimension_entry(ny)]
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
        self.nBytesProcessed += int(get_field(pvObject, "uncompressedSize", 0) or 0)
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
