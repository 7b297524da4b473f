"""The encryptor and decryptor processors (see :mod:`pvhpc.processors.encryption`)."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any

import numpy as np
import pvaccess as pva
from Crypto.Cipher import AES, PKCS1_OAEP
from Crypto.Hash import SHA256
from Crypto.Random import get_random_bytes
from Crypto.Signature import pkcs1_15

from ...processor import UserDataProcessor, config_flag
from .envelope import (
    ENVELOPE_FORMAT,
    ENVELOPE_TYPE,
    EncryptionError,
    associated_data,
    deserialize_pv_object,
    serialize_pv_object,
    signed_digest,
)
from .keys import fingerprint, load_private_key

__all__ = ["AdImageDataEncryptor", "AdImageDataDecryptor"]


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
        self._fingerprint = fingerprint(key)

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
        self.sign = config_flag(self.configDict.get("sign", False), "sign")
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
            self.sign = config_flag(configDict["sign"], "sign")
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
        aad = associated_data(object_id, self._fingerprint, wrapped_key)
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
            signature = pkcs1_15.new(self._key).sign(signed_digest(aad, nonce, tag, payload))
        envelope = pva.PvObject(
            ENVELOPE_TYPE,
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
        return pva.PvObject(ENVELOPE_TYPE)


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
        self.verify = config_flag(self.configDict.get("verify", False), "verify")
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
            self.verify = config_flag(configDict["verify"], "verify")

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
        aad = associated_data(object_id, fingerprint, wrapped_key)
        verified = False
        if self.verify:
            if not signature:
                raise EncryptionError(f"object {object_id} is not signed; cannot verify it")
            try:
                pkcs1_15.new(self._public_key).verify(
                    signed_digest(aad, nonce, tag, payload), signature
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
