"""Codecs: exact round trips for every dtype, byte compatibility with areaDetector formats."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from pvhpc import codecs
from pvhpc.codecs import CODECS, CodecError, CodecUnavailableError, compress, decompress

LOSSLESS = [c for c in CODECS if c != "jpeg"]

DTYPES = [
    "bool",
    "int8",
    "uint8",
    "int16",
    "uint16",
    "int32",
    "uint32",
    "int64",
    "uint64",
    "float32",
    "float64",
]


def pixels(dtype, shape=(61, 83), seed=0):
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return rng.integers(0, 2, shape).astype(bool)
    if dtype.kind == "f":
        return (rng.standard_normal(shape) * 1000).astype(dtype)
    info = np.iinfo(dtype)
    # Smooth ramp plus noise over the full range: compressible, every byte exercised.
    ramp = np.add.outer(np.arange(shape[0]), np.arange(shape[1])).astype(dtype)
    noise = rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)
    out = ramp.copy()
    out[::3] = noise[::3]
    return out


@pytest.mark.parametrize("codec", LOSSLESS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_round_trip_every_dtype(codec, dtype):
    image = pixels(dtype)
    packed = compress(image, codec)
    assert packed.dtype == np.uint8 and packed.ndim == 1
    out = decompress(packed, codec, dtype, image.size)
    assert out.dtype == np.dtype(dtype)
    assert out.flags.writeable
    np.testing.assert_array_equal(out, image.ravel())


@pytest.mark.parametrize("codec", LOSSLESS)
def test_round_trip_from_bytes_and_strided_input(codec):
    image = pixels("uint16", (40, 50))
    strided = image.T  # not C-contiguous: compressed in C order of the transposed view
    packed = compress(strided, codec)
    out = decompress(packed.tobytes(), codec, np.uint16, image.size)
    np.testing.assert_array_equal(out, np.ascontiguousarray(strided).ravel())


@pytest.mark.parametrize("codec", LOSSLESS)
def test_empty_and_odd_sizes(codec):
    for n in (0, 1, 7, 8, 9, 8191, 8193):
        data = np.arange(n, dtype=np.uint32) * 2654435761 % 1000
        data = data.astype(np.uint32)
        np.testing.assert_array_equal(decompress(compress(data, codec), codec, "u4", n), data)


def test_compresses_compressible_data():
    image = np.zeros((512, 512), np.uint16)
    for codec in LOSSLESS:
        assert compress(image, codec).size < image.nbytes / 20, codec
    assert compress(image.astype(np.uint8), "jpeg").size < image.size / 20


def test_bslz4_is_what_bshuf_compress_lz4_writes():
    """NDCodec's bslz4 is bshuf_compress_lz4's output with the default block size and
    no header: what areaDetector's viewers and PvaPy decode with block size 0."""
    bitshuffle = pytest.importorskip("bitshuffle")
    image = pixels("uint16", (64, 80))
    packed = compress(image, "bslz4")
    assert packed.tobytes() == bitshuffle.compress_lz4(image.ravel(), 0).tobytes()
    decoded = bitshuffle.decompress_lz4(packed, (image.size,), np.dtype("u2"), 0)
    np.testing.assert_array_equal(decoded, image.ravel())


def test_bslz4_with_the_hdf5_chunk_header(tmp_path):
    """The HDF5 bitshuffle filter's chunk is the same blocks behind a 12-byte header:
    bslz4_chunk makes it, and decompress reads it."""
    h5py = pytest.importorskip("h5py")
    bitshuffle_h5 = pytest.importorskip("bitshuffle.h5")
    image = pixels("uint16", (64, 80))
    path = tmp_path / "bs.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset(
            "d",
            data=image,
            chunks=image.shape,
            compression=bitshuffle_h5.H5FILTER,
            compression_opts=(0, bitshuffle_h5.H5_COMPRESS_LZ4),
        )
    with h5py.File(path, "r") as f:
        _, chunk = f["d"].id.read_direct_chunk((0, 0))
    packed = compress(image, "bslz4")
    assert codecs.bslz4_chunk(packed, image.nbytes, 2).tobytes() == bytes(chunk)
    np.testing.assert_array_equal(decompress(chunk, "bslz4", "u2", image.size), image.ravel())
    np.testing.assert_array_equal(decompress(packed, "bslz4", "u2", image.size), image.ravel())


def test_bslz4_default_block_size_matches_bitshuffle():
    bitshuffle = pytest.importorskip("bitshuffle")
    for dtype in ("u1", "u2", "u4", "u8"):
        data = np.arange(50_000, dtype=dtype)
        block = codecs.bslz4_default_block_size(data.itemsize)
        assert np.array_equal(
            bitshuffle.compress_lz4(data, 0), bitshuffle.compress_lz4(data, block)
        )


def test_lz4_is_a_raw_block_without_size_prefix():
    lz4_block = pytest.importorskip("lz4.block")
    image = pixels("int32")
    packed = compress(image, "lz4")
    assert lz4_block.decompress(packed.tobytes(), uncompressed_size=image.nbytes) == image.tobytes()


def test_blosc_is_a_standard_blosc_buffer():
    blosc = pytest.importorskip("blosc")
    image = pixels("float32")
    assert blosc.decompress(compress(image, "blosc").tobytes()) == image.tobytes()


def test_unknown_codec_names_the_supported_ones():
    with pytest.raises(CodecError, match=r"unknown codec 'zstd'.*lz4, bslz4, blosc, jpeg"):
        compress(np.zeros(4, np.uint8), "zstd")
    with pytest.raises(CodecError, match="unknown codec"):
        decompress(b"", "zlib", "u1", 0)


@pytest.mark.parametrize("codec", LOSSLESS)
def test_wrong_size_or_garbage_is_a_codec_error(codec):
    packed = compress(pixels("uint16"), codec)
    with pytest.raises(CodecError):
        decompress(packed, codec, "u2", 61 * 83 + 1)
    with pytest.raises(CodecError):
        decompress(b"\x00\x01\x02", codec, "u2", 100)


@pytest.mark.parametrize(
    ("codec", "module", "package"),
    [
        ("lz4", "lz4.block", "lz4"),
        ("bslz4", "bitshuffle", "bitshuffle"),
        ("blosc", "blosc", "blosc"),
        ("jpeg", "PIL.Image", "pillow"),
    ],
)
def test_missing_library_names_codec_and_package(monkeypatch, codec, module, package):
    monkeypatch.setitem(sys.modules, module, None)  # makes "import module" fail
    with pytest.raises(CodecUnavailableError) as info:
        compress(np.zeros(8, np.uint8), codec)
    message = str(info.value)
    assert f"codec {codec!r}" in message and f"{package!r}" in message
    assert "pip install pvhpc[codecs]" in message
    assert isinstance(info.value, ImportError)


def test_jpeg_is_a_jpeg_file_of_a_uint8_mono_or_rgb1_image():
    """NDCodec's JPEG mode: a JFIF file, lossy; uint8 mono or pixel-interleaved RGB."""
    ramp = np.add.outer(np.arange(40), np.arange(56)).astype(np.uint8)
    rgb = np.stack([ramp, ramp // 2, 255 - ramp], axis=2)
    for image in (ramp, rgb):
        packed = compress(image, "jpeg", level=95)
        assert packed[:3].tobytes() == b"\xff\xd8\xff"  # the JPEG start of image
        out = decompress(packed, "jpeg", "u1", image.size)
        assert out.dtype == np.uint8 and out.size == image.size
        assert np.abs(out.reshape(image.shape).astype(int) - image).max() <= 8
    with pytest.raises(CodecError, match="uint8 images only, not uint16"):
        compress(ramp.astype(np.uint16), "jpeg")
    with pytest.raises(CodecError, match="mono .* or RGB1"):
        compress(np.zeros((3, 4, 5), np.uint8), "jpeg")
    with pytest.raises(CodecError, match="decodes to uint8 pixels"):
        decompress(compress(ramp, "jpeg"), "jpeg", "u2", ramp.size)
    with pytest.raises(CodecError):
        decompress(compress(ramp, "jpeg"), "jpeg", "u1", ramp.size + 1)
    with pytest.raises(CodecError):
        decompress(b"\x00\x01\x02", "jpeg", "u1", 3)
