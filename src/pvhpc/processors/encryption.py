"""Encrypt frames in one stage of a workflow and decrypt them in a later one.

:class:`AdImageDataEncryptor` turns every received object (normally an NTNDArray
frame) into an *envelope*: a small PvObject carrying ``objectId`` (the frame's
object id, so that the next stage runs with ``--oid-field objectId``), a fresh
``timeStamp`` and the encrypted frame. :class:`AdImageDataDecryptor` turns
envelopes back into the exact objects that were encrypted — same structure, same
pixels, dtype, dimensions, attributes, timestamps and ``uniqueId``.

Both take ``privateKeyFilePath``: an RSA private key without passphrase, as written
by ``ssh-keygen -t rsa`` (OpenSSH format), ``ssh-keygen -t rsa -m PEM`` (PKCS#1) or
``-m PKCS8``. Both stages use the same key: the encryptor wraps each AES key with
its public half, the decryptor unwraps it with the private half.

Envelope format ``pvhpc-envelope/1`` (fields of the envelope PvObject):

``objectId`` (long)
    object id of the encrypted object (its ``objectIdField``, ``uniqueId`` by default).
``timeStamp`` (structure of secondsPastEpoch, nanoseconds, userTag)
    when the envelope was made; strictly increasing, so that a distributor
    downstream tells envelopes apart.
``format`` (string)
    ``pvhpc-envelope/1``.
``keyFingerprint`` (string)
    first 8 bytes (hex) of SHA-256 of the RSA public key (DER); a decryptor with
    another key says so instead of failing obscurely.
``wrappedKey`` (ubyte[])
    the 256-bit AES key, encrypted with RSA-OAEP (SHA-256). A fresh key is drawn
    for every frame, or every ``keyPeriod`` seconds.
``nonce`` (ubyte[12])
    AES-GCM nonce: an 8-byte big-endian counter (per key) and 4 random bytes.
``tag`` (ubyte[16])
    AES-GCM authentication tag.
``payload`` (ubyte[])
    AES-256-GCM ciphertext of the serialized object. Associated data
    (authenticated, not encrypted): ``format``, ``objectId`` (decimal),
    ``keyFingerprint`` and ``wrappedKey``, each followed by a NUL byte.
``signature`` (ubyte[])
    empty, or (``sign``) an RSA PKCS#1 v1.5 signature with SHA-256 over
    ``associated data || nonce || tag || SHA-256(payload)``.

The serialized object (plaintext) is ``u32 little-endian header length``, a UTF-8
JSON header, then the raw bytes of every numeric array of the object (the pixels,
mostly), back to back. The header holds the object's structure, type ids and
values with each array replaced by a reference to its bytes; it is never executed
or unpickled, so a forged envelope can at worst be rejected. Any PvObject can be
encrypted; NTNDArray frames come back as ``pvaccess.NtNdArray`` with their type ids
(other objects come back without type ids, which pvaccess does not report). An
attribute whose value is a scalar comes back in areaDetector's form, the variant
holding the scalar itself.

Requires the ``crypto`` extra (pycryptodome).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import threading
import time
from collections import OrderedDict
from typing import Any

import numpy as np
import pvaccess as pva

from ..processor import UserDataProcessor

try:
    from Crypto.Cipher import AES, PKCS1_OAEP
    from Crypto.Hash import SHA256
    from Crypto.PublicKey import RSA
    from Crypto.Random import get_random_bytes
    from Crypto.Signature import pkcs1_15
except ImportError as _exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        "AdImageDataEncryptor/AdImageDataDecryptor need pycryptodome: pip install 'pvhpc[crypto]'"
    ) from _exc

__all__ = [
    "AdImageDataEncryptor",
    "AdImageDataDecryptor",
    "EncryptionError",
    "ENVELOPE_FORMAT",
    "load_private_key",
    "serialize_pv_object",
    "deserialize_pv_object",
]

ENVELOPE_FORMAT = "pvhpc-envelope/1"
NTNDARRAY_TYPE_ID = "epics:nt/NTNDArray:1.0"
_TIME_T = {"secondsPastEpoch": pva.LONG, "nanoseconds": pva.INT, "userTag": pva.INT}
_ENVELOPE_TYPE = {
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


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def load_private_key(path: Any):
    """Load an RSA private key without passphrase from ``path``.

    Accepts OpenSSH (``ssh-keygen -t rsa``), PKCS#1 PEM (``-m PEM``) and PKCS#8 PEM.
    Raises :class:`ValueError` naming the file and what is wrong with it.
    """
    if not path:
        raise ValueError("privateKeyFilePath is required (an RSA private key file)")
    path = os.path.expanduser(str(path))
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ValueError(f"privateKeyFilePath {path}: cannot read: {exc.strerror}") from exc
    try:
        key = RSA.import_key(data)
    except ValueError as exc:
        if "passphrase" in str(exc).lower():
            raise ValueError(
                f"privateKeyFilePath {path}: the key is protected by a passphrase; "
                "use a key without one (ssh-keygen -t rsa -m PEM -N '')"
            ) from exc
        raise ValueError(
            f"privateKeyFilePath {path}: not an RSA private key in OpenSSH, PKCS#1 or "
            f"PKCS#8 PEM format ({exc})"
        ) from exc
    if not key.has_private():
        raise ValueError(f"privateKeyFilePath {path}: holds a public key, not a private key")
    if key.size_in_bits() < 1024:
        raise ValueError(
            f"privateKeyFilePath {path}: RSA key of {key.size_in_bits()} bits is too short"
        )
    return key


def _fingerprint(key) -> str:
    return hashlib.sha256(key.public_key().export_key("DER")).hexdigest()[:16]


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


class _RateStats:
    """Counters, with rates per second since start (or the last reset); thread-safe."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self._names = names
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._counts = dict.fromkeys(self._names, 0)
            self._since = time.monotonic()
            self._n_bytes = 0

    def add(self, name: str, n_bytes: int = 0) -> None:
        with self._lock:
            self._counts[name] += 1
            self._n_bytes += n_bytes

    def snapshot(self, bytes_key: str) -> dict:
        with self._lock:
            elapsed = time.monotonic() - self._since
            stats: dict[str, Any] = {}
            for name, count in self._counts.items():
                stats["n" + name[0].upper() + name[1:]] = count
            for name, count in self._counts.items():
                stats[name + "Rate"] = count / elapsed if elapsed > 0 else 0.0
            stats[bytes_key] = self._n_bytes / elapsed / 1e6 if elapsed > 0 else 0.0
            return stats


class _KeyedProcessor(UserDataProcessor):
    """Shared key loading for the encryptor and the decryptor."""

    def __init__(self, configDict: dict | None = None) -> None:
        super().__init__(configDict)
        self._load_key(self.configDict.get("privateKeyFilePath"))

    def _load_key(self, path: Any) -> None:
        key = load_private_key(path)
        self.privateKeyFilePath = str(path)
        self._key = key
        self._public_key = key.public_key()
        self._fingerprint = _fingerprint(key)

    def configure(self, configDict: dict) -> None:
        """Apply runtime settings; a new ``privateKeyFilePath`` is loaded at once.

        Called from the control channel's thread. Raises :class:`ValueError` (and keeps
        the old key) if the new key cannot be loaded.
        """
        path = configDict.get("privateKeyFilePath")
        if path is not None and str(path) != self.privateKeyFilePath:
            self._load_key(path)
            self.logger.info("Loaded RSA key %s (fingerprint %s)", path, self._fingerprint)

    def start(self) -> None:
        """Called once before the first frame; logs which key is in use."""
        self.resetStats()
        self.logger.info(
            "%s using RSA key %s (%d bits, fingerprint %s)",
            type(self).__name__,
            self.privateKeyFilePath,
            self._key.size_in_bits(),
            self._fingerprint,
        )


def _associated_data(object_id: int, fingerprint: str, wrapped_key: bytes) -> bytes:
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


def _signed_digest(aad: bytes, nonce: bytes, tag: bytes, payload: Any):
    # The payload is hashed with hashlib (several times faster than the pure SHA-256
    # of pycryptodome on large frames); the signature covers that digest.
    h = SHA256.new(aad)
    h.update(nonce)
    h.update(tag)
    h.update(hashlib.sha256(payload).digest())
    return h


class AdImageDataEncryptor(_KeyedProcessor):
    """Encrypt every frame into a ``pvhpc-envelope/1`` object and publish it.

    Configuration (``--processor-args``, and ``configure`` at runtime):
    ``privateKeyFilePath`` (required), ``sign`` (0/1: sign each envelope, costs one
    RSA private-key operation per frame) [0], ``keyPeriod`` (seconds a random AES
    key is reused; 0 draws a fresh key for every frame) [0].

    ``process`` runs in the runtime's processing thread; it raises
    :class:`EncryptionError` for an object it cannot serialize (counted as a processor
    error, nothing published). Construction raises :class:`ValueError` if the key
    cannot be loaded.
    """

    def __init__(self, configDict: dict | None = None) -> None:
        super().__init__(configDict)
        self.sign = _flag(self.configDict.get("sign", False))
        self.keyPeriod = float(self.configDict.get("keyPeriod", 0))
        self._aes_key: bytes | None = None
        self._wrapped_key = b""
        self._key_time = 0.0
        self._key_counter = 0
        self._last_stamp = 0
        self._n_keys = 0
        self._stats = _RateStats(("encrypted", "signed", "failed"))

    def configure(self, configDict: dict) -> None:
        """Change ``sign``, ``keyPeriod`` or ``privateKeyFilePath`` while data flows."""
        super().configure(configDict)
        if "sign" in configDict:
            self.sign = _flag(configDict["sign"])
        if "keyPeriod" in configDict:
            self.keyPeriod = float(configDict["keyPeriod"])
        self._aes_key = None

    def _current_key(self) -> tuple[bytes, bytes, bytes]:
        now = time.monotonic()
        if (
            self._aes_key is None
            or self.keyPeriod <= 0
            or now - self._key_time >= self.keyPeriod
            or self._key_counter >= 2**32
        ):
            self._aes_key = get_random_bytes(32)
            self._wrapped_key = PKCS1_OAEP.new(self._public_key, hashAlgo=SHA256).encrypt(
                self._aes_key
            )
            self._key_time = now
            self._key_counter = 0
            self._n_keys += 1
        nonce = self._key_counter.to_bytes(8, "big") + get_random_bytes(4)
        self._key_counter += 1
        return self._aes_key, self._wrapped_key, nonce

    def _fresh_timestamp(self) -> dict:
        stamp = time.time_ns()
        if stamp <= self._last_stamp:
            stamp = self._last_stamp + 1
        self._last_stamp = stamp
        return {
            "secondsPastEpoch": stamp // 1_000_000_000,
            "nanoseconds": stamp % 1_000_000_000,
            "userTag": 0,
        }

    def encrypt(self, pvObject: Any) -> pva.PvObject:
        """Return the envelope of ``pvObject`` without publishing it."""
        field = self.objectIdField or "uniqueId"
        try:
            object_id = int(pvObject[field])
        except (KeyError, pva.FieldNotFound, TypeError, ValueError) as exc:
            raise EncryptionError(f"object has no integer object id field {field!r}") from exc
        parts = serialize_pv_object(pvObject)
        aes_key, wrapped_key, nonce = self._current_key()
        aad = _associated_data(object_id, self._fingerprint, wrapped_key)
        cipher = AES.new(aes_key, AES.MODE_GCM, nonce=nonce)
        cipher.update(aad)
        payload = np.empty(sum(memoryview(p).nbytes for p in parts), dtype=np.uint8)
        payload_view = memoryview(payload)
        offset = 0
        for part in parts:
            n = memoryview(part).nbytes
            if n:
                cipher.encrypt(memoryview(part).cast("B"), output=payload_view[offset : offset + n])
            offset += n
        tag = cipher.digest()
        signature = b""
        if self.sign:
            signature = pkcs1_15.new(self._key).sign(_signed_digest(aad, nonce, tag, payload))
        envelope = pva.PvObject(
            _ENVELOPE_TYPE,
            {
                "objectId": object_id,
                "timeStamp": self._fresh_timestamp(),
                "format": ENVELOPE_FORMAT,
                "keyFingerprint": self._fingerprint,
                "wrappedKey": np.frombuffer(wrapped_key, dtype=np.uint8),
                "nonce": np.frombuffer(nonce, dtype=np.uint8),
                "tag": np.frombuffer(tag, dtype=np.uint8),
                "payload": payload,
                "signature": np.frombuffer(signature, dtype=np.uint8),
            },
        )
        return envelope

    def process(self, pvObject: Any) -> pva.PvObject:
        """Encrypt one frame, publish the envelope and return it."""
        try:
            envelope = self.encrypt(pvObject)
        except Exception:
            self._stats.add("failed")
            raise
        self._stats.add("encrypted", int(envelope["payload"].nbytes))
        if self.sign:
            self._stats.add("signed")
        self.updateOutputChannel(envelope)
        return envelope

    def resetStats(self) -> None:
        """Zero the counters and restart the rates."""
        self._stats.reset()

    def getStats(self) -> dict:
        """``nEncrypted``, ``nSigned``, ``nFailed``, their rates (per s), ``encryptedMBps``, ``nKeys``."""
        stats = self._stats.snapshot("encryptedMBps")
        stats["nKeys"] = self._n_keys
        return stats

    def getStatsPvaTypes(self) -> dict:
        """PVA types of :meth:`getStats`."""
        types = {k: pva.DOUBLE for k in self.getStats()}
        types.update(nEncrypted=pva.UINT, nSigned=pva.UINT, nFailed=pva.UINT, nKeys=pva.UINT)
        return types

    def getOutputPvObjectType(self, pvObject: Any) -> pva.PvObject:
        """An empty envelope: the output channel's type."""
        return pva.PvObject(_ENVELOPE_TYPE)


class AdImageDataDecryptor(_KeyedProcessor):
    """Decrypt ``pvhpc-envelope/1`` objects back into the original frames and publish them.

    Run it with ``--oid-field objectId``. Configuration (``--processor-args``, and
    ``configure`` at runtime): ``privateKeyFilePath`` (required, the encryptor's key),
    ``verify`` (0/1: reject envelopes without a valid signature) [0].

    ``process`` runs in the runtime's processing thread. An envelope that fails
    decryption, authentication or verification raises :class:`EncryptionError`
    (counted as a processor error and in ``nFailed``); nothing is published for it.
    Construction raises :class:`ValueError` if the key cannot be loaded.
    """

    _KEY_CACHE_SIZE = 16

    def __init__(self, configDict: dict | None = None) -> None:
        super().__init__(configDict)
        self.verify = _flag(self.configDict.get("verify", False))
        self._keys: OrderedDict[bytes, bytes] = OrderedDict()
        self._n_keys = 0
        self._stats = _RateStats(("decrypted", "verified", "failed"))

    def configure(self, configDict: dict) -> None:
        """Change ``verify`` or ``privateKeyFilePath`` while data flows."""
        old = self._fingerprint
        super().configure(configDict)
        if self._fingerprint != old:
            self._keys.clear()
        if "verify" in configDict:
            self.verify = _flag(configDict["verify"])

    def _unwrap(self, wrapped_key: bytes) -> bytes:
        aes_key = self._keys.get(wrapped_key)
        if aes_key is not None:
            self._keys.move_to_end(wrapped_key)
            return aes_key
        try:
            aes_key = PKCS1_OAEP.new(self._key, hashAlgo=SHA256).decrypt(wrapped_key)
        except ValueError as exc:
            raise EncryptionError("cannot unwrap the AES key with our RSA key") from exc
        self._keys[wrapped_key] = aes_key
        self._n_keys += 1
        if len(self._keys) > self._KEY_CACHE_SIZE:
            self._keys.popitem(last=False)
        return aes_key

    def decrypt(self, pvObject: Any) -> Any:
        """Return the object inside envelope ``pvObject``; raises :class:`EncryptionError`."""
        try:
            fmt = pvObject["format"]
            object_id = int(pvObject["objectId"])
            fingerprint = pvObject["keyFingerprint"]
            wrapped_key = np.asarray(pvObject["wrappedKey"], dtype=np.uint8).tobytes()
            nonce = np.asarray(pvObject["nonce"], dtype=np.uint8).tobytes()
            tag = np.asarray(pvObject["tag"], dtype=np.uint8).tobytes()
            payload = np.ascontiguousarray(pvObject["payload"], dtype=np.uint8)
            signature = np.asarray(pvObject["signature"], dtype=np.uint8).tobytes()
        except (KeyError, pva.FieldNotFound, TypeError, ValueError) as exc:
            raise EncryptionError(f"not a {ENVELOPE_FORMAT} object: {exc}") from exc
        if fmt != ENVELOPE_FORMAT:
            raise EncryptionError(f"unknown envelope format {fmt!r} (expected {ENVELOPE_FORMAT})")
        if fingerprint != self._fingerprint:
            raise EncryptionError(
                f"object {object_id} was encrypted for RSA key {fingerprint}, "
                f"but {self.privateKeyFilePath} is key {self._fingerprint}"
            )
        aad = _associated_data(object_id, fingerprint, wrapped_key)
        verified = False
        if self.verify:
            if not signature:
                raise EncryptionError(f"object {object_id} is not signed; cannot verify it")
            try:
                pkcs1_15.new(self._public_key).verify(
                    _signed_digest(aad, nonce, tag, payload), signature
                )
            except ValueError as exc:
                raise EncryptionError(f"object {object_id}: signature verification failed") from exc
            verified = True
        cipher = AES.new(self._unwrap(wrapped_key), AES.MODE_GCM, nonce=nonce)
        cipher.update(aad)
        plaintext = bytearray(payload.nbytes)
        if payload.nbytes:
            cipher.decrypt(memoryview(payload), output=plaintext)
        try:
            cipher.verify(tag)
        except ValueError as exc:
            raise EncryptionError(
                f"object {object_id}: authentication failed (payload or envelope altered)"
            ) from exc
        obj = deserialize_pv_object(plaintext)
        return obj, verified

    def process(self, pvObject: Any) -> Any:
        """Decrypt one envelope, publish the original object and return it."""
        try:
            obj, verified = self.decrypt(pvObject)
        except Exception:
            self._stats.add("failed")
            raise
        self._stats.add("decrypted", int(pvObject["payload"].nbytes))
        if verified:
            self._stats.add("verified")
        self.updateOutputChannel(obj)
        return obj

    def resetStats(self) -> None:
        """Zero the counters and restart the rates."""
        self._stats.reset()

    def getStats(self) -> dict:
        """``nDecrypted``, ``nVerified``, ``nFailed``, their rates (per s), ``decryptedMBps``, ``nKeys``."""
        stats = self._stats.snapshot("decryptedMBps")
        stats["nKeys"] = self._n_keys
        return stats

    def getStatsPvaTypes(self) -> dict:
        """PVA types of :meth:`getStats`."""
        types = {k: pva.DOUBLE for k in self.getStats()}
        types.update(nDecrypted=pva.UINT, nVerified=pva.UINT, nFailed=pva.UINT, nKeys=pva.UINT)
        return types

    def getOutputPvObjectType(self, pvObject: Any) -> Any:
        """The type of the decrypted objects: that of ``pvObject`` decrypted, else an NTNDArray."""
        try:
            obj, _ = self.decrypt(pvObject)
            return obj
        except Exception:
            return pva.NtNdArray()
