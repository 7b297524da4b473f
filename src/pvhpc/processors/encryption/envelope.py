"""The ``pvhpc-envelope/1`` format: an object serialized to bytes and back, and the
envelope's fields (see :mod:`pvhpc.processors.encryption` for the format)."""

from __future__ import annotations

import hashlib
import json
import struct
from typing import Any

import numpy as np
import pvaccess as pva
from Crypto.Hash import SHA256

__all__ = [
    "ENVELOPE_FORMAT",
    "ENVELOPE_TYPE",
    "EncryptionError",
    "serialize_pv_object",
    "deserialize_pv_object",
    "associated_data",
    "signed_digest",
]

ENVELOPE_FORMAT = "pvhpc-envelope/1"
NTNDARRAY_TYPE_ID = "epics:nt/NTNDArray:1.0"
_TIME_T = {"secondsPastEpoch": pva.LONG, "nanoseconds": pva.INT, "userTag": pva.INT}
ENVELOPE_TYPE = {
    "objectId": pva.LONG,
    "timeStamp": _TIME_T,
    "format": pva.STRING,
    "keyFingerprint": pva.STRING,
    "wrappedKey": [pva.UBYTE],
    "nonce": [pva.UBYTE],
    "tag": [pva.UBYTE],
    "payload": [pva.UBYTE],
    "signature": [pva.UBYTE],
}
_NTNDARRAY_ARGS = pva.NtNdArray().__getinitargs__()
_SCALAR_TYPES = {name: getattr(pva, name) for name in pva.ScalarType.names}
_HEADER_LEN = struct.Struct("<I")


class EncryptionError(Exception):
    """A frame could not be encrypted, decrypted or verified; it is not passed on."""


def _encode(value: Any, arrays: list) -> Any:
    """Make the ``__getinitargs__`` form of a PvObject JSON-able; arrays go to ``arrays``."""
    if isinstance(value, dict):
        return {k: _encode(v, arrays) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "biuf":
            arrays.append(np.ascontiguousarray(value))
            return {"$a": len(arrays) - 1}
        return {"$l": value.tolist()}
    if isinstance(value, tuple):
        return {"$u": [_encode(v, arrays) for v in value]}
    if isinstance(value, list):
        return [_encode(v, arrays) for v in value]
    if isinstance(value, pva.ScalarType):
        return {"$s": str(value)}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return {"$l": list(value)}
    return value


def _decode(value: Any, arrays: list) -> Any:
    if isinstance(value, dict):
        if len(value) == 1:
            ((key, inner),) = value.items()
            if key == "$a":
                return arrays[inner]
            if key == "$u":
                return tuple(_decode(v, arrays) for v in inner)
            if key == "$s":
                return _SCALAR_TYPES[inner]
            if key == "$l":
                return inner
        return {k: _decode(v, arrays) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v, arrays) for v in value]
    return value


def serialize_pv_object(pv_object: Any) -> list:
    """Serialize any PvObject into buffers whose concatenation is the plaintext.

    Returns ``[length+header bytes, array, array, ...]`` (arrays are views, not copies).
    """
    # pvaccess's own pickling support: (structure, values[, type id[, field type ids]]).
    args = pv_object.__getinitargs__()
    type_dict, value_dict = args[0], args[1]
    type_id = args[2] if len(args) > 2 else ""
    sub_type_ids = args[3] if len(args) > 3 else {}
    if not type_id and type_dict == _NTNDARRAY_ARGS[0]:
        # Objects from a monitor are plain PvObjects that do not report their type
        # ids; a frame with the full NTNDArray structure is one.
        type_id, sub_type_ids = _NTNDARRAY_ARGS[2], _NTNDARRAY_ARGS[3]
    arrays: list[np.ndarray] = []
    header = {
        "type": _encode(type_dict, arrays),
        "typeId": type_id,
        "subTypeIds": sub_type_ids,
        "value": None,
        "arrays": None,
    }
    n_type_arrays = len(arrays)
    header["value"] = _encode(value_dict, arrays)
    if n_type_arrays:
        raise EncryptionError("unexpected array in a PvObject's type description")
    header["arrays"] = [[a.dtype.str, a.size] for a in arrays]
    text = json.dumps(header, separators=(",", ":")).encode()
    return [_HEADER_LEN.pack(len(text)) + text, *arrays]


def deserialize_pv_object(plaintext: Any) -> Any:
    """Rebuild the PvObject (an ``NtNdArray`` for NTNDArray frames) from its plaintext."""
    buf = memoryview(plaintext)
    if len(buf) < _HEADER_LEN.size:
        raise EncryptionError("decrypted payload is too short")
    (n,) = _HEADER_LEN.unpack_from(buf)
    end = _HEADER_LEN.size + n
    try:
        header = json.loads(bytes(buf[_HEADER_LEN.size : end]))
    except ValueError as exc:
        raise EncryptionError(f"decrypted payload has a bad header: {exc}") from exc
    arrays = []
    offset = end
    for dtype_str, count in header["arrays"]:
        dtype = np.dtype(dtype_str)
        arrays.append(np.frombuffer(buf, dtype=dtype, count=count, offset=offset))
        offset += dtype.itemsize * count
    if offset != len(buf):
        raise EncryptionError("decrypted payload size does not match its header")
    type_dict = _decode(header["type"], [])
    value_dict = _decode(header["value"], arrays)
    type_id = header["typeId"]
    if type_id != NTNDARRAY_TYPE_ID:
        return pva.PvObject(type_dict, value_dict, type_id, header["subTypeIds"])
    attributes = value_dict.pop("attribute", None)
    frame = pva.NtNdArray(type_dict, value_dict, type_id, header["subTypeIds"])
    if attributes:
        frame["attribute"] = [_nt_attribute(a) for a in attributes]
    return frame


def _is_scalar_type(t: Any) -> bool:
    return isinstance(t, pva.ScalarType) or (
        isinstance(t, list) and len(t) == 1 and isinstance(t[0], pva.ScalarType)
    )


def _nt_attribute(fields: dict) -> Any:
    """Rebuild one NTAttribute; a scalar value goes into the variant in standard form.

    pvaccess builds a variant from its dict form as a structure ``{value}``; areaDetector
    and ``NtAttribute`` put the scalar itself in the variant. Frames carry the latter.
    """
    value = fields.get("value")
    if not (
        isinstance(value, tuple)
        and len(value) == 2
        and list(value[1]) == ["value"]
        and _is_scalar_type(value[1]["value"])
    ):
        return fields
    attribute = pva.NtAttribute(fields.get("name", ""), pva.PvObject(value[1], value[0]))
    for key, item in fields.items():
        if key not in ("name", "value"):
            attribute[key] = item
    return attribute


def associated_data(object_id: int, fingerprint: str, wrapped_key: bytes) -> bytes:
    return b"".join(
        (
            ENVELOPE_FORMAT.encode(),
            b"\0",
            str(object_id).encode(),
            b"\0",
            fingerprint.encode(),
            b"\0",
            wrapped_key,
            b"\0",
        )
    )


def signed_digest(aad: bytes, nonce: bytes, tag: bytes, payload: Any):
    # The payload is hashed with hashlib (several times faster than the pure SHA-256
    # of pycryptodome on large frames); the signature covers that digest.
    h = SHA256.new(aad)
    h.update(nonce)
    h.update(tag)
    h.update(hashlib.sha256(payload).digest())
    return h
