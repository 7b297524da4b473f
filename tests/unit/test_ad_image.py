"""NTNDArray ⇄ numpy helpers: every dtype, color mode and codec round trip; views not copies."""

from __future__ import annotations

import time

import numpy as np
import pvaccess as pva
import pytest

from pvhpc.codecs import CODECS
from pvhpc.processors import AdImageProcessor
from pvhpc.processors.ad_image import (
    DTYPE_FIELDS,
    FIELD_DTYPES,
    get_attributes,
    get_codec,
    get_color_mode,
    get_data_timestamp,
    get_dims,
    get_frame_id,
    get_image,
    get_timestamp,
    get_value_field,
    make_frame,
    make_timestamp,
    scalar_type_code,
)
from pvhpc.testing import ProcessorHarness

LOSSLESS = [c for c in CODECS if c != "jpeg"]
DTYPES = list(FIELD_DTYPES.values())


def pixels(dtype, shape, seed=0):
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return rng.integers(0, 2, shape).astype(bool)
    if dtype.kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_mono_round_trip_every_dtype(dtype):
    image = pixels(dtype, (5, 7))
    frame = make_frame(image, 42)
    assert get_value_field(frame) == DTYPE_FIELDS[np.dtype(dtype)]
    assert get_dims(frame) == [7, 5]  # x first
    assert get_color_mode(frame) == 0
    assert frame["uncompressedSize"] == frame["compressedSize"] == image.nbytes
    out = get_image(frame)
    assert out.dtype == dtype and out.shape == (5, 7)
    np.testing.assert_array_equal(out, image)


@pytest.mark.parametrize("codec", LOSSLESS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_compressed_round_trip_every_dtype(dtype, codec):
    image = pixels(dtype, (9, 13))
    frame = make_frame(image, 1, codec=codec)
    assert get_codec(frame) == codec
    assert get_value_field(frame) == "ubyteValue"
    assert frame["uncompressedSize"] == image.nbytes
    assert frame["compressedSize"] == frame["value"][0]["ubyteValue"].size
    # The uncompressed type travels in codec.parameters as a pvData ScalarType code.
    assert frame["codec"]["parameters"][0]["value"] == scalar_type_code(dtype)
    out = get_image(frame)
    assert out.dtype == dtype and out.shape == (9, 13)
    np.testing.assert_array_equal(out, image)


@pytest.mark.parametrize(
    ("mode", "dims", "native_shape"),
    [
        (2, [3, 6, 4], (4, 6, 3)),  # RGB1: pixel interleaved
        (3, [6, 3, 4], (4, 3, 6)),  # RGB2: row interleaved
        (4, [6, 4, 3], (3, 4, 6)),  # RGB3: planar
    ],
)
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32], ids=str)
def test_color_modes_round_trip_with_areadetector_layout(mode, dims, native_shape, dtype):
    image = pixels(dtype, (4, 6, 3))
    frame = make_frame(image, 3, color_mode=mode)
    assert get_color_mode(frame) == mode
    assert get_dims(frame) == dims
    np.testing.assert_array_equal(get_image(frame), image)
    native = get_image(frame, native=True)
    assert native.shape == native_shape
    # The buffer holds the mode's memory layout.
    flat = frame["value"][0][DTYPE_FIELDS[np.dtype(dtype)]]
    np.testing.assert_array_equal(flat, native.ravel())
    if mode == 2:
        np.testing.assert_array_equal(flat[:3], image[0, 0, :])
    if mode == 3:
        np.testing.assert_array_equal(flat[:6], image[0, :, 0])  # red of row 0
    if mode == 4:
        np.testing.assert_array_equal(flat[:24], image[:, :, 0].ravel())  # red plane


@pytest.mark.parametrize("codec", LOSSLESS)
def test_compressed_color_frame(codec):
    image = pixels(np.uint8, (8, 10, 3))
    frame = make_frame(image, 1, color_mode="rgb3", codec=codec)
    np.testing.assert_array_equal(get_image(frame), image)


def test_color_mode_defaults_and_errors():
    assert get_color_mode(make_frame(np.zeros((4, 5, 3), np.uint8))) == 2
    assert get_color_mode(make_frame(np.zeros((4, 5), np.uint8))) == 0
    stack = make_frame(np.zeros((2, 4, 5), np.uint8))
    assert get_color_mode(stack) == 0 and get_dims(stack) == [5, 4, 2]
    assert get_image(stack).shape == (2, 4, 5)
    with pytest.raises(ValueError, match=r"\(ny, nx, 3\)"):
        make_frame(np.zeros((4, 5), np.uint8), color_mode=2)
    with pytest.raises(ValueError, match="unknown color mode"):
        make_frame(np.zeros((4, 5, 3), np.uint8), color_mode="bayer")
    with pytest.raises(TypeError, match="complex128"):
        make_frame(np.zeros((2, 2), complex))


def test_non_contiguous_input_is_laid_out_in_c_order():
    base = np.arange(48, dtype=np.uint16).reshape(6, 8)
    frame = make_frame(base.T)  # pvaccess itself would copy raw memory, ignoring strides
    np.testing.assert_array_equal(get_image(frame), base.T)
    frame = make_frame(base[::2, ::3])
    np.testing.assert_array_equal(get_image(frame), base[::2, ::3])


def test_get_image_is_a_read_only_view_not_a_copy():
    frame = make_frame(np.arange(64 * 64, dtype=np.uint16).reshape(64, 64))
    a, b = get_image(frame), get_image(frame)
    assert not a.flags.owndata and not a.flags.writeable
    assert np.shares_memory(a, b)
    assert np.shares_memory(a, frame["value"][0]["ushortValue"])
    # The view keeps the buffer alive without the frame object.
    del frame
    assert a[1, 0] == 64


def test_get_image_on_a_plain_pvobject_and_missing_fields():
    frame = make_frame(np.arange(6, dtype=np.int32).reshape(2, 3), 9)
    plain = pva.PvObject(frame.getStructureDict(), frame.get())  # what a monitor delivers
    np.testing.assert_array_equal(get_image(plain), [[0, 1, 2], [3, 4, 5]])
    assert get_frame_id(plain) == 9
    subset = pva.PvObject({"uniqueId": pva.INT}, {"uniqueId": 5})  # a field request
    assert get_frame_id(subset) == 5
    assert get_image(subset).size == 0
    assert get_dims(subset) == [] and get_attributes(subset) == {}
    assert get_timestamp(subset) == 0.0 and get_codec(subset) == ""
    empty = pva.NtNdArray()
    assert get_value_field(empty) == "" and get_image(empty).size == 0


def test_dimension_mismatch_is_an_error():
    frame = make_frame(np.zeros((4, 5), np.uint8), 7)
    frame["dimension"] = [{"size": 3}, {"size": 3}]
    with pytest.raises(ValueError, match="frame 7: dimensions"):
        get_image(frame)


def test_compressed_frame_without_type_needs_dtype():
    image = pixels(np.uint16, (4, 4))
    frame = make_frame(image, 2, codec="lz4")
    frame["codec"] = {"name": "lz4", "parameters": pva.PvString("")}
    with pytest.raises(ValueError, match="dtype="):
        get_image(frame)
    np.testing.assert_array_equal(get_image(frame, dtype=np.uint16), image)


def test_the_type_in_codec_parameters_may_be_a_structure_with_a_value_field():
    """p4p cannot put a 32-bit integer in a variant except as a structure: a source
    written with it may send ``codec.parameters`` as ``{value: 6}``."""
    image = pixels(np.uint16, (4, 4))
    frame = make_frame(image, 2, codec="lz4")
    frame["codec"] = {"name": "lz4", "parameters": pva.PvObject({"value": pva.INT}, {"value": 6})}
    np.testing.assert_array_equal(get_image(frame), image)


def test_timestamps_fresh_unless_given():
    before = time.time()
    a = make_frame(np.zeros((2, 2), np.uint8), 1)
    b = make_frame(np.zeros((2, 2), np.uint8), 1)
    after = time.time()
    assert before - 1e-6 <= get_timestamp(a) <= after + 1e-6
    # A distributor tells updates apart by timeStamp: two frames never share one.
    assert a["timeStamp"] != b["timeStamp"]
    assert get_data_timestamp(a) == get_timestamp(a)
    c = make_frame(np.zeros((2, 2), np.uint8), 1, time_stamp=1700000000.25, data_time_stamp=(5, 6))
    assert c["timeStamp"]["secondsPastEpoch"] == 1700000000
    assert c["timeStamp"]["nanoseconds"] == 250_000_000
    assert get_data_timestamp(c) == pytest.approx(5.000000006)
    assert make_timestamp({"secondsPastEpoch": 3, "nanoseconds": 4})["nanoseconds"] == 4
    assert make_timestamp(1.9999999999)["nanoseconds"] <= 999_999_999


def test_attributes_and_like():
    attrs = {
        "Exposure": 0.25,
        "Gain": 3,
        "Big": 2**40,
        "Name": "det1",
        "On": True,
        "Small": np.uint16(7),
        "ColorMode": 4,  # replaced by the real layout's mode
    }
    frame = make_frame(np.ones((3, 4), np.int16), 11, attributes=attrs, descriptor="d")
    got = get_attributes(frame)
    assert got == {
        "ColorMode": 0,
        "Exposure": 0.25,
        "Gain": 3,
        "Big": 2**40,
        "Name": "det1",
        "On": True,
        "Small": 7,
    }
    assert frame["descriptor"] == "d"
    source = make_frame(np.ones((3, 4), np.int16), 11, attributes=attrs, data_time_stamp=123.5)
    source_attr = source["attribute"]
    source_attr[1]["descriptor"] = "exposure time"
    source["attribute"] = source_attr
    derived = make_frame(np.zeros((4, 5, 3), np.uint8), 12, like=source)
    got = get_attributes(derived)
    assert got["ColorMode"] == 2 and got["Exposure"] == 0.25 and got["Name"] == "det1"
    assert [a["descriptor"] for a in derived["attribute"] if a["name"] == "Exposure"] == [
        "exposure time"
    ]
    assert get_data_timestamp(derived) == 123.5
    assert get_timestamp(derived) != get_timestamp(source)
    nt_attrs = [pva.NtAttribute("X", pva.PvFloat(1.5)), {"name": "Y", "value": "y"}]
    assert get_attributes(make_frame(np.zeros((1, 1), np.uint8), attributes=nt_attrs)) == {
        "ColorMode": 0,
        "X": 1.5,
        "Y": "y",
    }


def test_ids_up_to_int32():
    frame = make_frame(np.zeros((1, 1), np.uint8), 2**31 - 1)
    assert get_frame_id(frame) == 2**31 - 1


def test_helpers_are_static_methods_of_the_processor():
    proc = AdImageProcessor()
    frame = proc.make_frame(np.eye(3, dtype=np.uint8), 5)
    np.testing.assert_array_equal(proc.get_image(frame), np.eye(3))
    assert proc.get_frame_id(frame) == 5


def test_ad_image_processor_passes_frames_through_and_counts():
    frames = [make_frame(np.zeros((4, 4), np.uint16), i) for i in range(1, 4)]
    with ProcessorHarness(AdImageProcessor) as h:
        h.run(frames)
    assert h.published == frames
    assert h.stats == {"nFramesProcessed": 3, "nBytesProcessed": 3 * 32}
    h.user_stats_object()
    h.reset_stats()
    assert h.stats["nFramesProcessed"] == 0


@pytest.mark.parametrize("codec", [None, "bslz4"])
def test_frames_received_over_pva_read_back_and_views_outlive_updates(codec):
    """Over a real (loopback) channel: pixels exact, and what we keep stays as it was.

    pvaccess reuses the object handed to a monitor callback for later updates; the
    numpy view from get_image and a pvObject.copy() taken in the callback do not change.
    """
    from harness import unique_prefix, wait_for

    name = unique_prefix() + ":image"
    images = [pixels(np.uint16, (48, 64), seed=i) for i in range(1, 21)]
    server = pva.PvaServer(name, make_frame(np.zeros((48, 64), np.uint16), 0, codec=codec))
    channel = pva.Channel(name)
    kept = []
    initial = []

    def on_update(pv):
        if get_frame_id(pv) > 0:
            kept.append((get_frame_id(pv), get_image(pv), pv.copy()))
        else:
            initial.append(True)

    try:
        channel.monitor(on_update, "field()")
        # The first update (frame 0, the current value) shows the subscription is in
        # place; isMonitorActive() turns true before that, and an update made in
        # between could be taken for the current value and coalesced with the next.
        wait_for(lambda: initial, 30, "the monitor's first update")
        for i, image in enumerate(images, 1):
            server.update(make_frame(image, i, codec=codec))
            # One update at a time, so that none is coalesced away.
            wait_for(lambda i=i: kept and kept[-1][0] == i, 10, f"frame {i}")
    finally:
        channel.stopMonitor()
        server.stop()
    assert [k[0] for k in kept] == list(range(1, 21))
    for frame_id, view, copy in kept:
        np.testing.assert_array_equal(view, images[frame_id - 1])
        assert get_frame_id(copy) == frame_id
        np.testing.assert_array_equal(get_image(copy), images[frame_id - 1])
