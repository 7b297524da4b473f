"""Compression codecs for NTNDArray frames, byte-compatible with areaDetector's NDCodec.

An NTNDArray frame compressed by areaDetector's NDCodec plugin carries the codec in
``codec.name`` (``lz4``, ``bslz4``, ``blosc``), the compressed bytes in
``value.ubyteValue``, the byte counts in ``compressedSize``/``uncompressedSize``, and
the type of the uncompressed data in ``codec.parameters`` (see
:mod:`pvhpc.processors.ad_image`). This module only turns arrays into compressed
bytes and back; the NTNDArray fields are set and read by ``ad_image``.

Byte formats, as NDCodec writes them:

``lz4``
    One raw LZ4 block of the whole array (``LZ4_compress_default``): no frame, no
    size prefix. The uncompressed size comes from ``uncompressedSize``.
``bslz4``
    Bitshuffle + LZ4 with the 12-byte header of the HDF5 bitshuffle filter
    (id 32008): the uncompressed size in bytes as big-endian uint64, the block size
    in *bytes* as big-endian uint32, then the blocks. ``bitshuffle.compress_lz4``
    returns the blocks only, without this header, so :func:`compress` adds it and
    :func:`decompress` strips it (and uses its block size). The same layout is what
    Dectris detectors stream and what HDF5 direct chunk writes expect.
``blosc``
    A standard Blosc 1 buffer with its own 16-byte header (``blosc_compress``);
    by default the ``blosclz`` compressor, level 5, byte shuffle.

The compression libraries are optional (``pip install pvhpc[codecs]``); they are
imported when a codec is first used, and a missing one raises
:class:`CodecUnavailableError` naming the codec and the package.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np

__all__ = [
    "CODECS",
    "CodecError",
    "CodecUnavailableError",
    "compress",
    "decompress",
    "bslz4_default_block_size",
]

CODECS = ("lz4", "bslz4", "blosc")
"""Codec names understood by :func:`compress` and :func:`decompress`."""

_PACKAGES = {
    "lz4": (("lz4.block", "lz4"),),
    "bslz4": (("bitshuffle", "bitshuffle"),),
    "blosc": (("blosc", "blosc"),),
}

_BSLZ4_HEADER = 12


class CodecError(ValueError):
    """An unknown codec name, or compressed data that cannot be decoded."""


class CodecUnavailableError(CodecError, ImportError):
    """The library a codec needs is not installed; the message says what to install."""


def _library(codec: str) -> Any:
    if codec not in _PACKAGES:
        raise CodecError(f"unknown codec {codec!r}; supported codecs: {', '.join(CODECS)}")
    (module, package), *_ = _PACKAGES[codec]
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise CodecUnavailableError(
            f"codec {codec!r} needs the {package!r} package: pip install pvhpc[codecs] "
            f"(or pip install {package})"
        ) from exc


def bslz4_default_block_size(itemsize: int) -> int:
    """Block size, in elements, that bitshuffle picks for ``block_size=0``.

    Mirrors ``bshuf_default_block_size`` (stable across bitshuffle versions by
    design): 8 KiB worth of elements, rounded down to a multiple of 8, at least 128.
    """
    block = (8192 // itemsize) // 8 * 8
    return max(block, 128)


def compress(array: np.ndarray, codec: str, *, level: int | None = None) -> np.ndarray:
    """Compress ``array`` with ``codec``; return the compressed bytes as a 1-D uint8 array.

    The array is compressed in C (row-major) order; a non-contiguous array is made
    contiguous first, which copies it. ``level`` is the compression level for
    ``blosc`` (0-9, default 5) and the acceleration for ``lz4`` (default 1); it is
    ignored by ``bslz4``. Pure function, safe from any thread. The result may be
    read-only. Raises :class:`CodecError` for an unknown codec and
    :class:`CodecUnavailableError` if the codec's library is missing.
    """
    lib = _library(codec)
    data = np.ascontiguousarray(array)
    if data.dtype == np.bool_:
        data = data.view(np.uint8)
    if codec == "lz4":
        out = lib.compress(
            data,
            mode="fast" if level else "default",
            acceleration=level or 1,
            store_size=False,
            return_bytearray=True,
        )
        return np.frombuffer(out, dtype=np.uint8)
    if codec == "bslz4":
        flat = data.reshape(-1)
        block = bslz4_default_block_size(flat.dtype.itemsize)
        body = lib.compress_lz4(flat, block) if flat.size else np.empty(0, np.uint8)
        out = np.empty(_BSLZ4_HEADER + body.size, dtype=np.uint8)
        out[:8] = np.frombuffer(int(flat.nbytes).to_bytes(8, "big"), np.uint8)
        out[8:12] = np.frombuffer(int(block * flat.dtype.itemsize).to_bytes(4, "big"), np.uint8)
        out[12:] = body
        return out
    out = lib.compress(
        data,
        typesize=data.dtype.itemsize,
        clevel=5 if level is None else level,
        shuffle=lib.SHUFFLE,
        cname="blosclz",
    )
    return np.frombuffer(out, dtype=np.uint8)


def decompress(buffer: Any, codec: str, dtype: Any, n_elements: int) -> np.ndarray:
    """Decompress ``buffer`` (bytes-like or uint8 array) into a 1-D array of ``dtype``.

    ``n_elements`` is the number of elements of the uncompressed array (the frame's
    ``uncompressedSize`` divided by the item size); the decoded size is checked
    against it. The result is a new, writable array. Pure function, safe from any
    thread. Raises :class:`CodecError` for an unknown codec or corrupt data, and
    :class:`CodecUnavailableError` if the codec's library is missing.
    """
    lib = _library(codec)
    dtype = np.dtype(dtype)
    store_dtype = np.dtype(np.uint8) if dtype == np.bool_ else dtype
    nbytes = int(n_elements) * store_dtype.itemsize
    raw = np.frombuffer(buffer, dtype=np.uint8) if not isinstance(buffer, np.ndarray) else buffer
    raw = np.ascontiguousarray(raw).reshape(-1).view(np.uint8)
    try:
        if codec == "lz4":
            if nbytes == 0:
                out = np.empty(0, store_dtype)
            else:
                data = lib.decompress(raw, uncompressed_size=nbytes, return_bytearray=True)
                out = np.frombuffer(data, dtype=store_dtype)
        elif codec == "bslz4":
            out = _bslz4_decompress(lib, raw, store_dtype, int(n_elements))
        else:
            if raw.size < 16:
                raise CodecError(f"blosc buffer of {raw.size} bytes is shorter than its header")
            size = int.from_bytes(raw[4:8].tobytes(), "little")
            if size != nbytes:
                raise CodecError(
                    f"blosc buffer holds {size} bytes, expected {nbytes} "
                    f"({n_elements} x {store_dtype})"
                )
            out = np.empty(int(n_elements), dtype=store_dtype)
            if nbytes:
                lib.decompress_ptr(raw, out.ctypes.data)
    except CodecError:
        raise
    except Exception as exc:
        raise CodecError(f"cannot decompress {codec} data: {type(exc).__name__}: {exc}") from exc
    if out.nbytes != nbytes:
        raise CodecError(
            f"{codec} data decompressed to {out.nbytes} bytes, expected {nbytes} "
            f"({n_elements} x {store_dtype})"
        )
    return out.view(np.bool_) if dtype == np.bool_ else out


def _bslz4_decompress(lib: Any, raw: np.ndarray, dtype: np.dtype, n_elements: int) -> np.ndarray:
    if raw.size < _BSLZ4_HEADER:
        raise CodecError(f"bslz4 buffer of {raw.size} bytes is shorter than its 12-byte header")
    total = int.from_bytes(raw[:8].tobytes(), "big")
    block_bytes = int.from_bytes(raw[8:12].tobytes(), "big")
    if total != n_elements * dtype.itemsize:
        raise CodecError(
            f"bslz4 header says {total} bytes, expected {n_elements * dtype.itemsize} "
            f"({n_elements} x {dtype})"
        )
    if n_elements == 0:
        return np.empty(0, dtype)
    block = block_bytes // dtype.itemsize if block_bytes else 0
    if block and block % 8:
        raise CodecError(f"bslz4 header block size {block_bytes} bytes is not valid for {dtype}")
    return lib.decompress_lz4(raw[_BSLZ4_HEADER:], (n_elements,), dtype, block)
