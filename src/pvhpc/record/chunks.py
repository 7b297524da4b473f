"""Frames as HDF5 chunks: the bytes a frame carries, wrapped for a direct chunk write.

A recording stores each frame as it arrived: an uncompressed frame's pixels are the
chunk itself; a compressed frame (areaDetector's NDCodec formats, see
:mod:`pvhpc.codecs`) becomes a chunk of the HDF5 filter that decodes the same
stream, so that h5py with hdf5plugin (or any HDF5 reader with the filter plugins)
reads the pixels, and nothing is decompressed and recompressed on the way:

=========  =========  ===========================================================
codec      filter id  chunk
=========  =========  ===========================================================
``lz4``    32004      the LZ4 filter's header (uncompressed size, big-endian
                      uint64; block size, uint32), then the frame's one LZ4 block
                      behind its compressed size (uint32)
``bslz4``  32008      bitshuffle's 12-byte header, then the frame's blocks as they
                      are (bitshuffle filter, LZ4 option)
``blosc``  32001      the frame's Blosc buffer as it is (it carries its own header)
=========  =========  ===========================================================

:func:`frame_bytes` undoes the wrapping, giving back the bytes the frame carried.
Pure functions, safe from any thread.
"""

from __future__ import annotations

import numpy as np

from .. import codecs

__all__ = ["FILTERS", "chunk_bytes", "filter_options", "frame_bytes"]

#: HDF5 filter id of each codec's chunks.
FILTERS: dict[str, int] = {"lz4": 32004, "bslz4": 32008, "blosc": 32001}

_LZ4_HEADER = 12
_BSLZ4_HEADER = 12


def filter_options(codec: str, itemsize: int, frame_nbytes: int) -> dict:
    """``create_dataset`` keywords for a dataset of ``codec`` chunks (none for ``''``).

    Without the filter plugins in this process, the parameters are the ones the
    filters' own ``set_local`` would write, so that readers decode all the same; with
    them (hdf5plugin imported), the filter completes its own.
    """
    if not codec:
        return {}
    if codec == "lz4":
        options: tuple[int, ...] = (0,)
    elif codec == "bslz4":
        # (filter version, bitshuffle version, element size, block size: 0 = default,
        # compression: 2 = LZ4). Decoding reads the element size from here; a loaded
        # filter takes only the last two and puts the first three in front itself.
        options = (0, 2) if _available(FILTERS[codec]) else (0, 0, int(itemsize), 0, 2)
    elif codec == "blosc":
        # (filter revision, blosc version, type size, chunk bytes, level, shuffle,
        # compressor); decoding reads everything from the buffer's own header.
        options = (2, 2, int(itemsize), int(frame_nbytes), 5, 1, 0)
    else:
        raise codecs.CodecError(f"unknown codec {codec!r}; supported: {', '.join(FILTERS)}")
    return {
        "compression": FILTERS[codec],
        "compression_opts": options,
        "allow_unknown_filter": True,
    }


def _available(filter_id: int) -> bool:
    import h5py

    return bool(h5py.h5z.filter_avail(filter_id))


def chunk_bytes(codec: str, payload: np.ndarray, nbytes: int, itemsize: int) -> np.ndarray:
    """The chunk to write for a frame carrying ``payload`` (its ``value`` bytes as uint8)
    with ``codec`` (``''``: uncompressed); ``nbytes`` is its uncompressed size."""
    if not codec or codec == "blosc":
        return payload
    if codec == "bslz4":
        return codecs.bslz4_chunk(payload, nbytes, itemsize)
    if codec == "lz4":
        if payload.size == nbytes:
            # The LZ4 filter takes a block as long as its data for stored data; a
            # compressed block of exactly that length (possible, never seen) is
            # stored decompressed instead, which the filter reads as such.
            payload = codecs.decompress(payload, "lz4", np.uint8, nbytes)
        out = np.empty(_LZ4_HEADER + 4 + payload.size, np.uint8)
        out[:8] = np.frombuffer(int(nbytes).to_bytes(8, "big"), np.uint8)
        out[8:12] = np.frombuffer(int(nbytes).to_bytes(4, "big"), np.uint8)
        out[12:16] = np.frombuffer(int(payload.size).to_bytes(4, "big"), np.uint8)
        out[16:] = payload
        return out
    raise codecs.CodecError(f"unknown codec {codec!r}; supported: {', '.join(FILTERS)}")


def frame_bytes(codec: str, chunk: bytes, nbytes: int) -> tuple[str, np.ndarray]:
    """``(codec, payload)`` of a frame from its stored chunk: what :func:`chunk_bytes`
    wrapped. An ``lz4`` chunk whose block was stored as plain data (see there) comes
    back uncompressed, as codec ``''``. Raises CodecError for a malformed chunk."""
    raw = np.frombuffer(chunk, np.uint8)
    if not codec or codec == "blosc":
        return codec, raw
    if codec == "bslz4":
        if raw.size < _BSLZ4_HEADER or int.from_bytes(raw[:8].tobytes(), "big") != nbytes:
            raise codecs.CodecError("bslz4 chunk without its 12-byte header")
        return codec, raw[_BSLZ4_HEADER:]
    if codec == "lz4":
        if raw.size < _LZ4_HEADER + 4 or int.from_bytes(raw[:8].tobytes(), "big") != nbytes:
            raise codecs.CodecError("lz4 chunk without its 12-byte header")
        block = int.from_bytes(raw[8:12].tobytes(), "big")
        size = int.from_bytes(raw[12:16].tobytes(), "big")
        if block < nbytes or size != raw.size - 16:
            raise codecs.CodecError("lz4 chunk of more than one block: not written by pvhpc")
        if size == nbytes:
            return "", raw[16:]
        return codec, raw[16:]
    raise codecs.CodecError(f"unknown codec {codec!r}; supported: {', '.join(FILTERS)}")
