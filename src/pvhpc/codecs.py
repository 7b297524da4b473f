"""Compression codecs for NTNDArray frames, byte-compatible with areaDetector's NDCodec.

An NTNDArray frame compressed by areaDetector's NDCodec plugin carries the codec in
``codec.name`` (``lz4``, ``bslz4``, ``blosc``), the compressed bytes in
``value.ubyteValue``, the byte counts in ``compressedSize``/``uncompressedSize``, and
the type of the uncompressed data in ``codec.parameters`` (see
:mod:`pvhpc.ntnda`). This module only turns arrays into compressed
bytes and back; the NTNDArray fields are set and read by ``ad_image``.

Byte formats, as NDCodec writes them:

``lz4``
    One raw LZ4 block of the whole array (``LZ4_compress_default``): no frame, no
    size prefix. The uncompressed size comes from ``uncompressedSize``.
``bslz4``
    Bitshuffle + LZ4 as ``bshuf_compress_lz4`` writes it (what NDCodec calls): the
    blocks, each a 4-byte big-endian compressed length and its LZ4 data, with the
    default block size, and no header. areaDetector's viewers, PvaPy and p4p's
    users decode it with ``bshuf_decompress_lz4(…, block_size=0)``. The HDF5
    bitshuffle filter (id 32008), and Dectris' streams, put a 12-byte header in
    front (the uncompressed size in bytes as big-endian uint64, the block size in
    bytes as big-endian uint32): :func:`decompress` accepts that form too, and
    :func:`bslz4_chunk` makes it for HDF5 direct chunk writes.
``blosc``
    A standard Blosc 1 buffer with its own 16-byte header (``blosc_compress``);
    by default the ``blosclz`` compressor, level 5, byte shuffle.
``jpeg``
    A baseline JPEG file (JFIF) of a uint8 image, mono or RGB1 (pixel-interleaved):
    NDCodec's JPEG mode, lossy. ``level`` is the JPEG quality (1-95, default 85).
    Coded with pillow.

The compression libraries are optional (``pip install pvhpc[codecs]``); they are
imported when a codec is first used, and a missing one raises
:class:`CodecUnavailableError` naming the codec and the package.
"""

from __future__ import annotations

import importlib
import io
from typing import Any

import numpy as np

__all__ = [
    "CODECS",
    "CodecError",
    "CodecUnavailableError",
    "compress",
    "decompress",
    "bslz4_default_block_size",
    "bslz4_chunk",
]

CODECS = ("lz4", "bslz4", "blosc", "jpeg")
"""Codec names understood by :func:`compress` and :func:`decompress`."""

_PACKAGES = {
    "lz4": (("lz4.block", "lz4"),),
    "bslz4": (("bitshuffle", "bitshuffle"),),
    "blosc": (("blosc", "blosc"),),
    "jpeg": (("PIL.Image", "pillow"),),
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
    ``blosc`` (0-9, default 5), the acceleration for ``lz4`` (default 1) and the
    quality for ``jpeg`` (default 85); it is ignored by ``bslz4``. Pure function, safe from any thread. The result may be
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
        if not flat.size:
            return np.empty(0, np.uint8)
        return lib.compress_lz4(flat, bslz4_default_block_size(flat.dtype.itemsize))
    if codec == "jpeg":
        return _jpeg_compress(lib, data, 85 if level is None else level)
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
        elif codec == "jpeg":
            if store_dtype != np.uint8:
                raise CodecError(f"jpeg data decodes to uint8 pixels, not {dtype}")
            with lib.open(io.BytesIO(raw.tobytes())) as image:
                out = np.asarray(image).reshape(-1)
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


def bslz4_chunk(packed: np.ndarray, n_bytes: int, itemsize: int) -> np.ndarray:
    """``bslz4`` data (as frames carry it) with the 12-byte header of the HDF5
    bitshuffle filter in front: a chunk for an HDF5 direct chunk write."""
    header = int(n_bytes).to_bytes(8, "big") + int(
        bslz4_default_block_size(itemsize) * itemsize
    ).to_bytes(4, "big")
    out = np.empty(_BSLZ4_HEADER + packed.size, dtype=np.uint8)
    out[:12] = np.frombuffer(header, np.uint8)
    out[12:] = packed.reshape(-1).view(np.uint8)
    return out


def _bslz4_header(raw: np.ndarray, nbytes: int, itemsize: int) -> int | None:
    """The block size (elements) of an HDF5-chunk header in front of ``raw``, or None."""
    if raw.size < _BSLZ4_HEADER or int.from_bytes(raw[:8].tobytes(), "big") != nbytes:
        return None
    block_bytes = int.from_bytes(raw[8:12].tobytes(), "big")
    if block_bytes % itemsize or (block_bytes // itemsize) % 8:
        return None
    return block_bytes // itemsize


def _bslz4_decompress(lib: Any, raw: np.ndarray, dtype: np.dtype, n_elements: int) -> np.ndarray:
    if n_elements == 0:
        return np.empty(0, dtype)
    block = _bslz4_header(raw, n_elements * dtype.itemsize, dtype.itemsize)
    if block is not None:
        raw = raw[_BSLZ4_HEADER:]
    return lib.decompress_lz4(raw, (n_elements,), dtype, block or 0)


def _jpeg_compress(lib: Any, data: np.ndarray, quality: int) -> np.ndarray:
    """A uint8 image (``(ny, nx)``, ``(ny, nx, 3)`` RGB1, or a row) as a JPEG file."""
    if data.dtype != np.uint8:
        raise CodecError(f"jpeg holds uint8 images only, not {data.dtype}")
    if data.ndim == 1:
        data = data.reshape(1, -1)
    if not (data.ndim == 2 or (data.ndim == 3 and data.shape[2] == 3)) or not data.size:
        raise CodecError(
            f"jpeg holds mono (ny, nx) or RGB1 (ny, nx, 3) images, not shape {data.shape}"
        )
    out = io.BytesIO()
    lib.fromarray(data).save(out, format="JPEG", quality=int(quality))
    return np.frombuffer(out.getvalue(), dtype=np.uint8)
