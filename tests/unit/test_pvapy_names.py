"""PvaPy's image-helper names on our AdImageProcessor, checked against PvaPy itself.

A user migrating from PvaPy changes only the import (``from pvhpc import
AdImageProcessor``); the helpers their processor calls (``reshapeNtNdArray``,
``generateNtNdArray2D``, ``replaceNtNdArrayImage2D``, ``getNtNdArrayDataFieldKey``)
must give what PvaPy's ``AdImageUtility`` gives on the same inputs. Where we differ on
purpose (RGB frames, which this PvaPy version cannot reshape; the codec of a replaced
image; bslz4 framing; ``dataTimeStamp`` on replace) the test says so.

Statistics values of PvaPy's ``FloatWithUnits`` (a ``float`` carrying units) go out
as plain numbers on the status channel and in both reports.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pvaccess as pva
import pytest
from pvapy.hpc.adImageProcessor import AdImageProcessor as PvaPyAdImageProcessor
from pvapy.utility.adImageUtility import AdImageUtility
from pvapy.utility.floatWithUnits import FloatWithUnits

import pvhpc
from harness import Recorder, final_reports, pv_get, wait_for
from pvhpc import AdImageProcessor, codecs
from pvhpc.channels import conform, pva_structure
from pvhpc.loading import load_processor_class
from pvhpc.processors.ad_image import (
    get_attributes,
    get_codec,
    get_color_mode,
    get_data_timestamp,
    get_dims,
    get_image,
    get_timestamp,
    get_value_field,
    make_frame,
)
from pvhpc.runtime.report import format_report, print_report
from pvhpc.testing import ProcessorHarness

# The dtypes PvaPy's helpers handle (NTNDArray's booleanValue is ours only).
PVAPY_DTYPES = [
    np.int8,
    np.uint8,
    np.int16,
    np.uint16,
    np.int32,
    np.uint32,
    np.int64,
    np.uint64,
    np.float32,
    np.float64,
]
TILE_FIELDS = {"tileIndexX": pva.INT, "tileIndexY": pva.INT}


def pixels(dtype, shape, seed=0):
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)


def tile_fields(ix, iy):
    return pva.PvObject(TILE_FIELDS, {"tileIndexX": ix, "tileIndexY": iy})


def stamp_ns(frame, field="timeStamp"):
    ts = frame[field]
    return ts["secondsPastEpoch"] * 1_000_000_000 + ts["nanoseconds"]


def assert_same_reshape(ours, theirs):
    frame_id, image, *sizes = ours
    ref_id, ref_image, *ref_sizes = theirs
    assert frame_id == ref_id
    assert sizes == ref_sizes  # nx, ny, nz, colorMode, fieldKey
    assert image.dtype == ref_image.dtype and image.shape == ref_image.shape
    np.testing.assert_array_equal(image, ref_image)


# -- the names -------------------------------------------------------------------------


def test_import_from_pvhpc_is_lazy_and_is_our_class():
    code = (
        "import sys, pvhpc\n"
        "assert 'pvaccess' not in sys.modules, 'import pvhpc loaded pvaccess'\n"
        "from pvhpc import AdImageProcessor\n"
        "from pvhpc.processors import AdImageProcessor as P\n"
        "assert AdImageProcessor is P and 'AdImageProcessor' in pvhpc.__all__\n"
        "print('ok')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
    assert "AdImageProcessor" in pvhpc.__all__


@pytest.mark.parametrize(
    "name",
    [
        "reshapeNtNdArray",
        "generateNtNdArray2D",
        "replaceNtNdArrayImage2D",
        "getNtNdArrayDataFieldKey",
    ],
)
def test_helpers_are_class_methods_with_pvapys_signatures(name):
    import inspect

    ours = getattr(AdImageProcessor, name)
    theirs = getattr(PvaPyAdImageProcessor, name)
    assert inspect.signature(ours).parameters.keys() == inspect.signature(theirs).parameters.keys()
    assert isinstance(inspect.getattr_static(AdImageProcessor, name), classmethod)


def test_helpers_work_without_and_with_an_instance():
    image = pixels(np.uint16, (4, 6))
    frame = AdImageProcessor.generateNtNdArray2D(3, image)
    assert AdImageProcessor.reshapeNtNdArray(frame)[2:] == (6, 4, None, 0, "ushortValue")
    p = AdImageProcessor({})
    assert p.reshapeNtNdArray(frame)[0] == 3
    assert p.getNtNdArrayDataFieldKey(image) == "ushortValue"


# -- reshapeNtNdArray ------------------------------------------------------------------


@pytest.mark.parametrize("dtype", PVAPY_DTYPES, ids=lambda d: np.dtype(d).name)
def test_reshape_mono_matches_pvapy(dtype):
    image = pixels(dtype, (5, 7), seed=1)
    for frame in (make_frame(image, 11), AdImageUtility.generateNtNdArray2D(11, image)):
        ours = AdImageProcessor.reshapeNtNdArray(frame)
        assert_same_reshape(ours, AdImageUtility.reshapeNtNdArray(frame))
        assert ours[2:] == (7, 5, None, 0, get_value_field(frame))
        np.testing.assert_array_equal(ours[1], image)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.float32],
                         ids=lambda d: np.dtype(d).name)  # fmt: skip
def test_our_bslz4_frames_decode_with_pvapys_utility(dtype):
    """bslz4 frames as our simulator sends them (``-cd bslz4``; lz4 and blosc are in
    the codecs section below) decode with the helper a PvaPy user's processor calls,
    to the same pixels."""
    image = pixels(dtype, (12, 10), seed=3)
    frame = make_frame(image, 4, codec="bslz4")
    theirs = AdImageUtility.reshapeNtNdArray(frame)
    assert theirs[1].dtype == image.dtype
    np.testing.assert_array_equal(theirs[1], image)
    assert_same_reshape(AdImageProcessor.reshapeNtNdArray(frame), theirs)


@pytest.mark.parametrize("mode", [2, 3, 4], ids=["rgb1", "rgb2", "rgb3"])
def test_reshape_rgb_frames_built_by_pvapy(mode):
    rgb = pixels(np.uint8, (4, 5, 3), seed=mode)
    frame = AdImageUtility.generateNtNdArray(9, rgb, colorMode=mode)
    frame_id, image, nx, ny, nz, color_mode, key = AdImageProcessor.reshapeNtNdArray(frame)
    assert (frame_id, nx, ny, nz, color_mode, key) == (9, 5, 4, 3, mode, "ubyteValue")
    assert image.shape == (4, 5, 3)
    np.testing.assert_array_equal(image, rgb)  # the image PvaPy built the frame from
    try:
        theirs = AdImageUtility.reshapeNtNdArray(frame)
    except pva.InvalidArgument:
        return  # this PvaPy reads every ColorMode as 0: it cannot reshape colour frames
    assert theirs[0] == frame_id and theirs[2:5] == (nx, ny, nz)


def test_reshape_rgb_from_make_frame_and_bad_layouts():
    rgb = pixels(np.uint16, (3, 4, 3))
    for mode in (2, 3, 4):
        r = AdImageProcessor.reshapeNtNdArray(make_frame(rgb, 2, color_mode=mode))
        assert r[2:] == (4, 3, 3, mode, "ushortValue")
        np.testing.assert_array_equal(r[1], rgb)
    # Three dimensions without a colour layout to match, or neither 2 nor 3 dimensions:
    # rejected as PvaPy rejects them.
    for frame in (
        make_frame(np.zeros((2, 3, 4), np.uint8), 5, color_mode=0),
        make_frame(np.zeros(6, np.uint8), 6),
        make_frame(np.zeros((2, 2, 2, 2), np.uint8), 7),
    ):
        with pytest.raises(pva.InvalidArgument, match="do not fit color mode"):
            AdImageProcessor.reshapeNtNdArray(frame)
        with pytest.raises(pva.InvalidArgument):
            AdImageUtility.reshapeNtNdArray(frame)


def test_reshape_of_a_frame_without_data_matches_pvapy():
    empty = pva.NtNdArray()
    assert AdImageProcessor.reshapeNtNdArray(empty) == AdImageUtility.reshapeNtNdArray(empty)
    assert AdImageProcessor.reshapeNtNdArray(empty) == (0, None, None, None, None, None, None)


def test_reshape_of_a_2d_frame_is_mono_whatever_its_color_mode_says():
    frame = make_frame(pixels(np.uint8, (3, 4)), 4)
    frame["attribute"] = [{"name": "ColorMode", "value": pva.PvInt(2)}]
    assert AdImageProcessor.reshapeNtNdArray(frame)[2:] == (4, 3, None, 0, "ubyteValue")
    assert AdImageUtility.reshapeNtNdArray(frame)[2:] == (4, 3, None, 0, "ubyteValue")


def test_reshape_after_the_network_matches_pvapy(prefix):
    image = pixels(np.int32, (6, 8), seed=4)
    channel = f"{prefix}:frame"
    server = pva.PvaServer(channel, make_frame(image, 21))
    try:
        received = pva.Channel(channel).get("")
    finally:
        server.stop()
    assert type(received) is pva.PvObject
    assert_same_reshape(
        AdImageProcessor.reshapeNtNdArray(received), AdImageUtility.reshapeNtNdArray(received)
    )


# -- codecs ----------------------------------------------------------------------------


@pytest.mark.parametrize("codec", ["lz4", "blosc"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.float32], ids=str)
def test_compressed_frames_match_pvapy(codec, dtype):
    image = pixels(dtype, (6, 10), seed=2)
    packed = codecs.compress(image, codec)
    # PvaPy's convention: compressorName + nx/ny/dtype mean "image is compressed data".
    ours = AdImageProcessor.generateNtNdArray2D(
        5, packed, nx=10, ny=6, dtype=dtype, compressorName=codec
    )
    theirs = AdImageUtility.generateNtNdArray2D(
        5, packed, nx=10, ny=6, dtype=dtype, compressorName=codec
    )
    for field in ("value", "codec", "compressedSize", "uncompressedSize", "dimension", "uniqueId"):
        assert str(ours[field]) == str(theirs[field]), field
    assert ours["uncompressedSize"] == image.nbytes and ours["compressedSize"] == packed.size
    for frame in (ours, theirs):
        mine = AdImageProcessor.reshapeNtNdArray(frame)
        assert_same_reshape(mine, AdImageUtility.reshapeNtNdArray(frame))
        assert mine[2:] == (10, 6, None, 0, "ubyteValue")  # the field as it travels
        np.testing.assert_array_equal(mine[1], image)
    # Ours also compresses a plain 2D image itself (PvaPy raises a TypeError here);
    # PvaPy reads the result back.
    own = AdImageProcessor.generateNtNdArray2D(6, image, compressorName=codec)
    assert get_codec(own) == codec
    assert_same_reshape(
        AdImageProcessor.reshapeNtNdArray(own), AdImageUtility.reshapeNtNdArray(own)
    )
    np.testing.assert_array_equal(AdImageUtility.reshapeNtNdArray(own)[1], image)


def test_compressed_payload_as_bytes_and_default_dtype():
    image = np.arange(12, dtype=np.float64).reshape(3, 4)
    packed = codecs.compress(image, "lz4")
    # No dtype with compressed data means float64, numpy's default, as in PvaPy.
    ours = AdImageProcessor.generateNtNdArray2D(1, bytes(packed), nx=4, ny=3, compressorName="lz4")
    theirs = AdImageUtility.generateNtNdArray2D(1, packed, nx=4, ny=3, compressorName="lz4")
    assert str(ours["codec"]) == str(theirs["codec"])
    assert ours["uncompressedSize"] == theirs["uncompressedSize"] == 96
    np.testing.assert_array_equal(AdImageProcessor.reshapeNtNdArray(ours)[1], image)


def test_bslz4_frames():
    image = pixels(np.uint16, (8, 16), seed=3) // 64
    own = AdImageProcessor.generateNtNdArray2D(2, image, compressorName="bslz4")
    packed = codecs.compress(image, "bslz4")
    given = AdImageProcessor.generateNtNdArray2D(
        2, packed, nx=16, ny=8, dtype=np.uint16, compressorName="bslz4"
    )
    for frame in (own, given):
        r = AdImageProcessor.reshapeNtNdArray(frame)
        assert r[2:] == (16, 8, None, 0, "ubyteValue")
        np.testing.assert_array_equal(r[1], image)
    # Our bslz4 data carries the 12-byte bitshuffle header (see pvhpc.codecs); this
    # PvaPy decodes headerless blocks only, so it is not compared here.


def test_compressing_with_another_dtype_is_refused():
    with pytest.raises(ValueError, match="dtype float32 given for a uint16 image"):
        AdImageProcessor.generateNtNdArray2D(
            1, np.zeros((2, 2), np.uint16), dtype=np.float32, compressorName="lz4"
        )


# -- generateNtNdArray2D ---------------------------------------------------------------


@pytest.mark.parametrize("dtype", PVAPY_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("extra", [False, True], ids=["plain", "tiles"])
def test_generate_matches_pvapy(dtype, extra):
    image = pixels(dtype, (6, 9), seed=5)
    fields = tile_fields(2, 1) if extra else None
    ours = AdImageProcessor.generateNtNdArray2D(77, image, extraFieldsPvObject=fields)
    theirs = AdImageUtility.generateNtNdArray2D(77, image, extraFieldsPvObject=fields)
    assert type(ours) is pva.NtNdArray
    assert ours.getStructureDict() == theirs.getStructureDict()
    for field in (
        "value",
        "codec",
        "compressedSize",
        "uncompressedSize",
        "dimension",
        "uniqueId",
        "attribute",
    ):
        assert str(ours[field]) == str(theirs[field]), field
    assert get_attributes(ours) == {"ColorMode": 0}
    assert get_timestamp(ours) == get_data_timestamp(ours)
    if extra:
        assert (ours["tileIndexX"], ours["tileIndexY"]) == (2, 1)
        assert (theirs["tileIndexX"], theirs["tileIndexY"]) == (2, 1)
    assert_same_reshape(
        AdImageProcessor.reshapeNtNdArray(ours), AdImageUtility.reshapeNtNdArray(theirs)
    )


def test_generate_ignores_nx_ny_dtype_for_uncompressed_images_as_pvapy_does():
    image = pixels(np.uint16, (4, 5))
    kwargs = {"nx": 10, "ny": 2, "dtype": np.float32}
    ours = AdImageProcessor.generateNtNdArray2D(1, image, **kwargs)
    theirs = AdImageUtility.generateNtNdArray2D(1, image, **kwargs)
    assert get_dims(ours) == get_dims(theirs) == [5, 4]
    assert get_value_field(ours) == get_value_field(theirs) == "ushortValue"


def test_generate_copies_views_in_their_logical_order():
    image = pixels(np.uint16, (6, 8), seed=6)
    for view in (image.T, image[:, ::2], image[1:4, 2:7]):
        ours = AdImageProcessor.generateNtNdArray2D(1, view)
        theirs = AdImageUtility.generateNtNdArray2D(1, view)
        assert str(ours["value"]) == str(theirs["value"])
        np.testing.assert_array_equal(get_image(ours), view)


def test_generate_extra_fields_of_every_kind_keep_their_values():
    extra = pva.PvObject(
        {"label": pva.STRING, "gain": pva.DOUBLE, "roi": {"x0": pva.INT}, "mask": [pva.FLOAT]},
        {"label": "tile", "gain": 1.5, "roi": {"x0": 9}, "mask": [1.0, 2.0]},
    )
    image = pixels(np.uint8, (3, 3))
    ours = AdImageProcessor.generateNtNdArray2D(1, image, extraFieldsPvObject=extra)
    theirs = AdImageUtility.generateNtNdArray2D(1, image, extraFieldsPvObject=extra)
    assert ours.getStructureDict() == theirs.getStructureDict()
    for key in ("label", "gain", "roi", "mask"):
        assert str(ours[key]) == str(theirs[key]), key
    assert ours["roi"] == {"x0": 9} and list(ours["mask"]) == [1.0, 2.0]


def test_generate_refuses_what_is_not_a_2d_image():
    for bad in (np.zeros(4, np.uint8), np.zeros((2, 2, 3), np.uint8)):
        with pytest.raises(ValueError, match="a 2D image"):
            AdImageProcessor.generateNtNdArray2D(1, bad)
        with pytest.raises(ValueError):
            AdImageUtility.generateNtNdArray2D(1, bad)
    with pytest.raises(TypeError, match="pvaccess.PvObject"):
        AdImageProcessor.generateNtNdArray2D(1, np.zeros((2, 2)), extraFieldsPvObject={"a": 1})


def test_generated_frames_have_strictly_increasing_timestamps():
    image = pixels(np.uint8, (2, 2))
    stamps = [stamp_ns(AdImageProcessor.generateNtNdArray2D(i, image)) for i in range(500)]
    assert all(b > a for a, b in zip(stamps, stamps[1:]))


def test_a_tile_frame_fits_a_record_declared_with_the_tile_fields(prefix):
    channel = f"{prefix}:tiles"
    server = pva.PvaServer(channel, pva.NtNdArray(TILE_FIELDS))
    try:
        image = pixels(np.uint16, (4, 6), seed=7)
        frame = AdImageProcessor.generateNtNdArray2D(
            8, image, extraFieldsPvObject=tile_fields(1, 3)
        )
        server.update(channel, frame)  # raises "structure definitions do not match" if not
        got = pva.Channel(channel).get("")
        # A frame without the tile fields does not fit, so the check above is real.
        with pytest.raises(ValueError, match="structure definitions do not match"):
            server.update(channel, make_frame(image, 9))
    finally:
        server.stop()
    assert (got["uniqueId"], got["tileIndexX"], got["tileIndexY"]) == (8, 1, 3)
    np.testing.assert_array_equal(get_image(got), image)


# -- replaceNtNdArrayImage2D -----------------------------------------------------------


@pytest.mark.parametrize("new_dtype", [np.uint16, np.float32, np.int64], ids=str)
def test_replace_matches_pvapy(new_dtype):
    old = pixels(np.uint16, (4, 5), seed=8)
    new = pixels(new_dtype, (3, 7), seed=9)

    def source():
        return AdImageUtility.generateNtNdArray2D(5, old, extraFieldsPvObject=tile_fields(0, 0))

    mine, ref = source(), source()
    before = stamp_ns(mine)
    ours = AdImageProcessor.replaceNtNdArrayImage2D(mine, 6, new, tile_fields(4, 2))
    theirs = AdImageUtility.replaceNtNdArrayImage2D(ref, 6, new, tile_fields(4, 2))
    assert ours is mine  # in place, as PvaPy
    for field in ("value", "compressedSize", "uncompressedSize", "dimension", "uniqueId"):
        assert str(ours[field]) == str(theirs[field]), field
    assert (ours["tileIndexX"], ours["tileIndexY"]) == (4, 2)
    assert stamp_ns(ours) > before
    assert_same_reshape(
        AdImageProcessor.reshapeNtNdArray(ours), AdImageUtility.reshapeNtNdArray(theirs)
    )
    np.testing.assert_array_equal(AdImageProcessor.reshapeNtNdArray(ours)[1], new)
    # Without extra fields, the frame's keep their values.
    again = AdImageProcessor.replaceNtNdArrayImage2D(ours, 7, new)
    assert (again["uniqueId"], again["tileIndexX"], again["tileIndexY"]) == (7, 4, 2)


def test_replace_keeps_attributes_descriptor_and_data_time():
    frame = make_frame(
        pixels(np.uint8, (4, 4)),
        1,
        attributes={"Gain": 2.5},
        time_stamp=1000.5,
        data_time_stamp=900.25,
        descriptor="detector A",
    )
    out = AdImageProcessor.replaceNtNdArrayImage2D(frame, 2, np.ones((2, 3), np.int16))
    assert get_attributes(out) == {"ColorMode": 0, "Gain": 2.5}
    assert out["descriptor"] == "detector A"
    # dataTimeStamp is when the detector took the data: kept (PvaPy sets it to now).
    assert get_data_timestamp(out) == 900.25
    assert get_timestamp(out) > 1000.5


def test_replace_on_compressed_colour_and_received_frames():
    new = pixels(np.uint16, (3, 4), seed=10)
    # A compressed source: the new image is stored uncompressed and says so (PvaPy
    # leaves codec.name set on raw data, which no reader can then decode).
    compressed = make_frame(pixels(np.uint16, (5, 5)), 1, codec="lz4")
    out = AdImageProcessor.replaceNtNdArrayImage2D(compressed, 2, new)
    assert get_codec(out) == ""
    np.testing.assert_array_equal(get_image(out), new)
    assert AdImageUtility.reshapeNtNdArray(out)[2:] == (4, 3, None, 0, "ushortValue")
    # A colour source becomes mono.
    colour = make_frame(pixels(np.uint8, (2, 2, 3)), 3, color_mode="rgb2")
    out = AdImageProcessor.replaceNtNdArrayImage2D(colour, 4, new)
    assert get_color_mode(out) == 0 and get_dims(out) == [4, 3]
    # A frame as a monitor hands it over (a plain PvObject).
    plain = pva.PvObject(make_frame(new, 1).getStructureDict())
    plain.set(make_frame(new, 1).get())
    out = AdImageProcessor.replaceNtNdArrayImage2D(plain, 5, new[:2])
    np.testing.assert_array_equal(get_image(out), new[:2])
    with pytest.raises(pva.FieldNotFound):
        AdImageProcessor.replaceNtNdArrayImage2D(make_frame(new, 1), 2, new, tile_fields(1, 1))


# -- getNtNdArrayDataFieldKey ----------------------------------------------------------


@pytest.mark.parametrize("dtype", [*PVAPY_DTYPES, np.float16, np.complex64], ids=str)
def test_data_field_key_matches_pvapy(dtype):
    image = np.zeros((2, 2), dtype)
    assert AdImageProcessor.getNtNdArrayDataFieldKey(
        image
    ) == AdImageUtility.getNtNdArrayDataFieldKey(image)


def test_data_field_key_of_types_only_we_handle():
    assert AdImageProcessor.getNtNdArrayDataFieldKey(np.zeros(2, bool)) == "booleanValue"
    assert AdImageProcessor.getNtNdArrayDataFieldKey(np.zeros(2, ">u2")) == "ushortValue"
    frame = AdImageProcessor.generateNtNdArray2D(1, np.arange(6, dtype=">u2").reshape(2, 3))
    np.testing.assert_array_equal(get_image(frame), np.arange(6).reshape(2, 3))


# -- a processor written for PvaPy, with only its import changed ----------------------

PROCESSOR_SOURCE = '''
import time

import numpy as np
import pvaccess as pva
from pvapy.utility.floatWithUnits import FloatWithUnits
{import_line}


class TileProcessor(AdImageProcessor):
    """Splits every frame into nTilesX x nTilesY tiles, published with their indices."""

    def __init__(self, configDict={{}}):
        AdImageProcessor.__init__(self, configDict)
        self.nTilesX = int(configDict.get('nTilesX', 2))
        self.nTilesY = int(configDict.get('nTilesY', 2))
        self.nFramesProcessed = 0
        self.nTilesGenerated = 0
        self.processingTime = 0
        self.tileArea = 0

    def process(self, pvObject):
        t0 = time.time()
        (frameId, image, nx, ny, nz, colorMode, fieldKey) = self.reshapeNtNdArray(pvObject)
        if nx is None:
            return pvObject
        tx = nx // self.nTilesX
        ty = ny // self.nTilesY
        self.tileArea = tx * ty
        for iy in range(self.nTilesY):
            for ix in range(self.nTilesX):
                tile = image[iy*ty:(iy+1)*ty, ix*tx:(ix+1)*tx]
                extra = pva.PvObject({{'tileIndexX': pva.INT, 'tileIndexY': pva.INT}},
                                     {{'tileIndexX': ix, 'tileIndexY': iy}})
                self.updateOutputChannel(
                    self.generateNtNdArray2D(frameId, tile, extraFieldsPvObject=extra))
                self.nTilesGenerated += 1
        self.nFramesProcessed += 1
        self.processingTime += time.time() - t0
        return pvObject

    def resetStats(self):
        self.nFramesProcessed = 0
        self.nTilesGenerated = 0

    def getStats(self):
        return {{
            'nFramesProcessed': self.nFramesProcessed,
            'nTilesGenerated': self.nTilesGenerated,
            'processingTime': FloatWithUnits(self.processingTime * 1000, 'ms'),
            'tileArea': FloatWithUnits(self.tileArea, 'px'),
        }}

    def getStatsPvaTypes(self):
        return {{
            'nFramesProcessed': pva.UINT,
            'nTilesGenerated': pva.UINT,
            'processingTime': pva.DOUBLE,
            'tileArea': pva.DOUBLE,
        }}

    def getOutputPvObjectType(self, pvObject):
        return pva.NtNdArray({{'tileIndexX': pva.INT, 'tileIndexY': pva.INT}})


class DoublingProcessor(AdImageProcessor):
    """Republishes every mono frame with its pixels doubled, in the same frame."""

    def __init__(self, configDict={{}}):
        AdImageProcessor.__init__(self, configDict)
        self.keys = []

    def process(self, pvObject):
        (frameId, image, nx, ny, nz, colorMode, fieldKey) = self.reshapeNtNdArray(pvObject)
        doubled = (image * 2).astype(image.dtype)
        self.keys.append(self.getNtNdArrayDataFieldKey(doubled))
        self.updateOutputChannel(self.replaceNtNdArrayImage2D(pvObject, frameId, doubled))
        return pvObject

    def getStats(self):
        return {{'keys': ','.join(sorted(set(self.keys)))}}
'''

PVAPY_IMPORT = "from pvapy.hpc.adImageProcessor import AdImageProcessor"
PVHPC_IMPORT = "from pvhpc import AdImageProcessor"


@pytest.fixture
def processor_files(tmp_path):
    paths = {}
    for name, line in (("pvapy", PVAPY_IMPORT), ("pvhpc", PVHPC_IMPORT)):
        path = tmp_path / f"tiles_{name}.py"
        path.write_text(PROCESSOR_SOURCE.format(import_line=line))
        paths[name] = str(path)
    return paths


def frames_for(n=4, shape=(6, 8), dtype=np.uint16):
    return [
        make_frame(pixels(dtype, shape, seed=i) // 4, i, codec="lz4" if i % 2 else None)
        for i in range(1, n + 1)
    ]


def run(path, class_name, frames, config=None):
    cls = load_processor_class(path, class_name)
    with ProcessorHarness(cls, config or {}) as h:
        h.run(frames)
    return cls, h


def test_a_pvapy_tile_processor_runs_with_the_import_changed(processor_files):
    frames = frames_for()
    cls, ours = run(processor_files["pvhpc"], "TileProcessor", frames, {"nTilesX": 2})
    assert issubclass(cls, AdImageProcessor)
    _, theirs = run(processor_files["pvapy"], "TileProcessor", frames_for(), {"nTilesX": 2})
    # What it should publish: four 3x4 tiles per frame, in order, with their indices.
    expected = []
    for frame in frames:
        image = get_image(frame)
        for iy in range(2):
            for ix in range(2):
                expected.append(
                    (frame["uniqueId"], ix, iy, image[iy * 3 : iy * 3 + 3, ix * 4 : ix * 4 + 4])
                )
    assert len(ours.published) == 16
    for out, (frame_id, ix, iy, tile) in zip(ours.published, expected, strict=True):
        assert (out["uniqueId"], out["tileIndexX"], out["tileIndexY"]) == (frame_id, ix, iy)
        np.testing.assert_array_equal(get_image(out), tile)
    # ... and what the same file publishes on PvaPy's base class.
    assert ours.published_ids == theirs.published_ids
    for a, b in zip(ours.published, theirs.published, strict=True):
        assert a.getStructureDict() == b.getStructureDict()
        assert (a["tileIndexX"], a["tileIndexY"]) == (b["tileIndexX"], b["tileIndexY"])
        np.testing.assert_array_equal(get_image(a), get_image(b))
    stamps = [stamp_ns(pv) for pv in ours.published]
    assert all(b > a for a, b in zip(stamps, stamps[1:]))  # a distributor tells them apart
    stats = ours.stats
    assert stats["nFramesProcessed"] == 4 and stats["nTilesGenerated"] == 16
    assert isinstance(stats["processingTime"], FloatWithUnits)
    status = ours.user_stats_object()  # fits the declared types, units and all
    assert status["tileArea"] == 12.0 and status["nTilesGenerated"] == 16


def test_a_pvapy_replacing_processor_runs_with_the_import_changed(processor_files):
    frames = frames_for(n=3, dtype=np.int32)
    originals = [np.array(get_image(f)) for f in frames]
    _, ours = run(processor_files["pvhpc"], "DoublingProcessor", frames)
    assert ours.published_ids == [1, 2, 3]
    for out, original in zip(ours.published, originals, strict=True):
        assert get_codec(out) == ""
        np.testing.assert_array_equal(get_image(out), original * 2)
    assert ours.stats == {"keys": "intValue"}


# -- FloatWithUnits statistics ---------------------------------------------------------


def snapshot(user_stats):
    return {
        "consumerId": 1,
        "receiverStats": {"nReceived": 3, "nRejected": 0, "nErrors": 0, "nOverruns": 0},
        "processorStats": {
            "nProcessed": 3,
            "nMissed": 0,
            "nErrors": 0,
            "processedRate": 1.5,
            "runtime": 2.0,
        },
        "queueStats": {"nQueued": 0},
        "publisherStats": {"nPublished": 3},
        "userStats": user_stats,
    }


def test_float_with_units_statistics_go_out_as_plain_numbers():
    stats = {"processingTime": FloatWithUnits(12.3456, "ms"), "nTiles": 4}
    structure = pva_structure(stats, {"nTiles": pva.UINT})
    assert structure["processingTime"] == pva.DOUBLE
    value = conform(stats, structure)
    assert type(value["processingTime"]) is float and value["processingTime"] == 12.3456
    assert pva.PvObject(structure, value)["processingTime"] == 12.3456
    # Declared as another type, the number is converted, not refused.
    as_long = conform(stats, {"processingTime": pva.LONG})
    assert as_long == {"processingTime": 12}
    text = format_report([snapshot(stats)])
    assert "processingTime=12.35" in text and "ms" not in text.split("user:")[1]
    stream = io.StringIO()
    print_report([snapshot(stats)], "consumer", "json", stream=stream)
    line = stream.getvalue()
    assert '"processingTime": 12.3456' in line
    assert json.loads(line)["userStats"]["processingTime"] == 12.3456


def test_float_with_units_statistics_from_a_running_consumer(procs, prefix, processor_files):
    """A real simulator and consumer running the tile processor (pvhpc import): the
    status channel, the output record with the tile fields and the JSON report."""
    status = f"{prefix}:tiles:1:status"
    output = f"{prefix}:tiles:1:output"
    consumer = procs.start(
        "consumer",
        "-ic",
        f"{prefix}:image",
        "-oc",
        f"{prefix}:tiles:*:output",
        "-sc",
        f"{prefix}:tiles:*:status",
        "-sqs",
        "100",
        "-rp",
        "0.5",
        "-rf",
        "json",
        "-pf",
        processor_files["pvhpc"],
        "-pc",
        "TileProcessor",
        "-pa",
        json.dumps({"nTilesX": 2, "nTilesY": 2}),
        name="tiles",
    )
    wait_for(lambda: pv_get(status) is not None, 30, "the consumer's status", procs=procs)
    sim = procs.start(
        "sim",
        "-cn",
        f"{prefix}:image",
        "-nx",
        "32",
        "-ny",
        "24",
        "-dt",
        "uint16",
        "-fps",
        "10",
        "-rt",
        "60",
        "-std",
        "1",
        name="sim",
    )
    wait_for(lambda: pv_get(status)["receiverStats"]["nReceived"] >= 1, 30, "a frame", procs=procs)
    tiles = Recorder(output, "tileIndexX", request="field(uniqueId,tileIndexX,tileIndexY)")
    try:
        wait_for(lambda: len(tiles.values) >= 8, 30, "tiles on the output", procs=procs)
    finally:
        tiles.close()
    assert set(tiles.values) <= {0, 1} and {0, 1} <= set(tiles.values)
    user = wait_for(
        lambda: (u := pv_get(status)["userStats"])["nFramesProcessed"] >= 2 and u,
        30,
        "userStats to count frames",
        procs=procs,
    )
    assert user["tileArea"] == 16 * 12 and isinstance(user["processingTime"], float)
    assert user["nTilesGenerated"] >= 4 * 2
    sim.stop()
    assert consumer.stop() == 0
    final = final_reports(consumer)[1]
    assert final["userStats"]["tileArea"] == 192.0
    assert isinstance(final["userStats"]["processingTime"], float)
    assert final["processorStats"]["nErrors"] == 0
