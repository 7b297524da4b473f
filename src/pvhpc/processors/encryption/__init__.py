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

try:
    import Crypto  # noqa: F401 - pycryptodome
except ImportError as _exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        "AdImageDataEncryptor/AdImageDataDecryptor need pycryptodome: pip install 'pvhpc[crypto]'"
    ) from _exc

from .envelope import ENVELOPE_FORMAT, EncryptionError, deserialize_pv_object, serialize_pv_object
from .keys import load_private_key
from .processors import AdImageDataDecryptor, AdImageDataEncryptor

__all__ = [
    "AdImageDataEncryptor",
    "AdImageDataDecryptor",
    "EncryptionError",
    "ENVELOPE_FORMAT",
    "load_private_key",
    "serialize_pv_object",
    "deserialize_pv_object",
]
