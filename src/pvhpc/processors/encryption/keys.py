"""RSA keys for the encryptor and the decryptor (``privateKeyFilePath``)."""

from __future__ import annotations

import hashlib
import os
from typing import Any

from Crypto.PublicKey import RSA

__all__ = ["load_private_key", "fingerprint"]


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


def fingerprint(key) -> str:
    return hashlib.sha256(key.public_key().export_key("DER")).hexdigest()[:16]
