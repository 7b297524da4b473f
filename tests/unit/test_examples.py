"""The example processors in examples/, run in memory with pvhpc.testing."""

from __future__ import annotations

import logging
import os
import random
import sys

import numpy as np
import pvaccess as pva
import pytest

from pvhpc.errors import UsageError
from pvhpc.loading import create_processor, load_processor_class
from pvhpc.processors.ad_image import (
    get_attributes,
    get_color_mode,
    get_data_timestamp,
    get_dims,
    get_frame_id,
    get_image,
    get_timestamp,
)
from pvhpc.testing import ProcessorHarness, make_frame, make_frames

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "examples")


def example(file_name: str, class_name: str) -> type:
    """Load an example class the way ``--processor-file``/``--processor-class`` does."""
    return load_processor_class(os.path.join(EXAMPLES, file_name), class_name)


@pytest.fixture(scope="module")
def Rotate():
    return example("hpcAdImageProcessorExample.py", "HpcAdImageProcessor")


@pytest.fixture(scope="module")
def Metadata():
    return example("hpcAdMetadataProcessorExample.py", "HpcAdMetadataProcessor")


@pytest.fixture(scope="module")
def Split():
    return example("splitAdImageProcessorExample.py", "SplitAdImageProcessor")


@pytest.fixture(scope="module")
def Stitch():
    return example("stitchAdImageProcessorExample.py", "StitchAdImageProcessor")


def ns(pv) -> int:
    ts = pv["timeStamp"]
    return ts["secondsPastEpoch"] * 10**9 + ts["nanoseconds"]


def check_stats_types(harness: ProcessorHarness) -> None:
    harness.user_stats_object()  # raises if a key lacks a type or a value does not fit


# --- rotation ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("angle", [0, 90, 180, 270, -90, 450])
def test_rotation_equals_rot90(Rotate, dtype, angle):
    frames = list(make_frames(3, shape=(24, 40), dtype=dtype))
    with ProcessorHarness(Rotate, {"angle": angle}) as h:
        h.run(frames)
    assert h.published_ids == [1, 2, 3]
    for frame, out in zip(frames, h.published, strict=True):
        expected = np.rot90(get_image(frame), (angle // 90) % 4)
        got = get_image(out)
        assert got.dtype == expected.dtype and got.shape == expected.shape
        assert got.tobytes() == np.ascontiguousarray(expected).tobytes()
        assert get_data_timestamp(out) == get_data_timestamp(frame)
    assert h.stats["nRotated"] == 3
    assert h.stats["angle"] == (angle // 90) % 4 * 90
    check_stats_types(h)


@pytest.mark.parametrize("mode", [2, 3, 4])
def test_rotation_of_colour_frames_keeps_colour_mode(Rotate, mode):
    frames = list(make_frames(2, shape=(10, 14, 3), dtype=np.uint16, color_mode=mode))
    with ProcessorHarness(Rotate, {"k": 1}) as h:
        h.run(frames)
    for frame, out in zip(frames, h.published, strict=True):
        assert get_color_mode(out) == mode
        assert np.array_equal(get_image(out), np.rot90(get_image(frame)))


def test_rotation_keeps_attributes_and_gives_fresh_timestamps(Rotate):
    frames = list(make_frames(5, attributes={"exposure": 0.5}, time_stamp=(1000, 0)))
    with ProcessorHarness(Rotate) as h:
        h.run(frames)
    stamps = [ns(pv) for pv in h.published]
    assert len(set(stamps)) == 5 and stamps[0] > 1000 * 10**9
    assert all(get_attributes(pv)["exposure"] == 0.5 for pv in h.published)


def test_rotation_angle_can_change_at_runtime(Rotate):
    a, b = make_frames(2, shape=(6, 8))
    h = ProcessorHarness(Rotate, {"angle": 90}).start()
    h.process(a)
    h.configure({"angle": 270})
    h.process(b)
    assert np.array_equal(h.published_images[0], np.rot90(get_image(a), 1))
    assert np.array_equal(h.published_images[1], np.rot90(get_image(b), 3))
    with pytest.raises(ValueError, match="multiple of 90"):
        h.configure({"angle": 45})
    assert h.stats["angle"] == 270


def test_rotation_bad_configuration_is_a_clear_error(Rotate):
    with pytest.raises(UsageError, match="angle must be a multiple of 90 degrees, got 30"):
        create_processor(Rotate, {"angle": 30})
    with pytest.raises(UsageError, match="disagree"):
        create_processor(Rotate, {"angle": 90, "k": 2})


# --- metadata association ------------------------------------------------------------

T0 = 1_700_000_000.0


def stamp(t: float) -> dict:
    whole = int(t)
    return {"secondsPastEpoch": whole, "nanoseconds": int(round((t - whole) * 1e9)), "userTag": 0}


def metadata(value: float, t: float) -> pva.PvObject:
    return pva.PvObject(
        {
            "value": pva.DOUBLE,
            "timeStamp": {"secondsPastEpoch": pva.LONG, "nanoseconds": pva.INT, "userTag": pva.INT},
        },
        {"value": value, "timeStamp": stamp(t)},
    )


def timed_frames(times: list[float], first_id: int = 1) -> list:
    return [
        make_frame(np.zeros((4, 4), np.uint8), first_id + i, time_stamp=t, data_time_stamp=t)
        for i, t in enumerate(times)
    ]


def test_metadata_is_attached_by_timestamp(Metadata):
    times = [T0 + 0.01 * i for i in range(10)]
    h = ProcessorHarness(
        Metadata,
        {"timestampTolerance": 0.001},
        metadata={
            "pva://x": [metadata(1.5 * i, t) for i, t in enumerate(times)],
            "ca://y": [metadata(-1.0 * i, t + 0.0004) for i, t in enumerate(times)],
        },
    )
    with h:
        h.run(timed_frames(times))
    assert h.published_ids == list(range(1, 11))
    for i, pv in enumerate(h.published):
        attrs = get_attributes(pv)
        assert attrs["x"] == 1.5 * i and attrs["y"] == -1.0 * i
        assert attrs["ColorMode"] == 0  # the frame's own attributes stay
        # The attribute is stamped with the metadata's own time.
        x = next(a for a in pv["attribute"] if a["name"] == "x")
        assert x["timeStamp"] == stamp(times[i])
    stats = h.stats
    assert stats["nMetadataMatched"] == 20
    assert stats["nMetadataDiscarded"] == 0
    assert stats["nFramesWithFullMetadata"] == 10
    assert stats["nFramesWithMissingMetadata"] == 0
    assert stats["nMetadataPending"] == 0
    check_stats_types(h)


def test_stale_metadata_is_discarded_and_future_metadata_waits(Metadata):
    times = [T0 + 0.01 * i for i in range(4)]
    x_values = [
        metadata(-1, T0 - 1.0),  # long before the first frame: stale
        metadata(-2, T0 - 0.005),  # outside the tolerance: stale
        metadata(0, times[0]),
        metadata(99, times[0] + 0.005),  # between frames: matches nothing, then stale
        metadata(2, times[2]),
        metadata(3, times[3] + 0.0002),
        metadata(4, times[3] + 0.01),  # for a frame not seen yet: waits
    ]
    h = ProcessorHarness(Metadata, {"timestampTolerance": 0.001}, metadata={"x": x_values})
    with h:
        h.run(timed_frames(times))
    found = [get_attributes(pv).get("x") for pv in h.published]
    assert found == [0, None, 2, 3]
    stats = h.stats
    assert stats["nMetadataMatched"] == 3
    assert stats["nMetadataDiscarded"] == 3
    assert stats["nMetadataPending"] == 1
    assert stats["nFramesWithFullMetadata"] == 3
    assert stats["nFramesWithMissingMetadata"] == 1
    assert stats["nFrames"] == 4


def test_closest_value_within_tolerance_wins(Metadata):
    t = T0 + 0.5
    values = [metadata(1, t - 0.0008), metadata(2, t + 0.0001), metadata(3, t + 0.0009)]
    h = ProcessorHarness(Metadata, {"timestampTolerance": 0.001}, metadata={"x": values})
    with h:
        h.process(timed_frames([t])[0])
    assert get_attributes(h.published[0])["x"] == 2
    assert h.stats["nMetadataDiscarded"] == 1  # the older one; the newer one stays
    assert h.stats["nMetadataPending"] == 1


def test_metadata_timestamp_offset_and_tolerance_at_runtime(Metadata):
    times = [T0 + 0.1 * i for i in range(6)]
    # The metadata clock runs 0.5 s ahead and 2 ms off.
    values = [metadata(i, t + 0.5 + 0.002) for i, t in enumerate(times)]
    h = ProcessorHarness(Metadata, {"timestampTolerance": 0.001}, metadata={"pva://m": values})
    frames = timed_frames(times)
    with h:
        h.process(frames[0])  # no offset: the value is in the future, it waits
        assert "m" not in get_attributes(h.published[0])
        h.configure({"metadataTimestampOffset": -0.5})
        h.process(frames[1])  # 2 ms off, tolerance 1 ms: value 0 too old, value 1 too new
        h.configure({"timestampTolerance": 0.005})
        h.run(frames[2:])
    assert [get_attributes(pv).get("m") for pv in h.published] == [None, None, 2, 3, 4, 5]
    stats = h.stats
    assert (stats["nMetadataMatched"], stats["nMetadataDiscarded"]) == (4, 2)
    assert (stats["nFramesWithFullMetadata"], stats["nFramesWithMissingMetadata"]) == (4, 2)


def test_metadata_of_other_consumers_frames_is_discarded(Metadata):
    # With a distributor, a consumer sees every other frame but all metadata.
    times = [T0 + 0.01 * i for i in range(20)]
    h = ProcessorHarness(
        Metadata,
        {"timestampTolerance": 0.00025},
        metadata={"x": [metadata(i, t) for i, t in enumerate(times)]},
    )
    with h:
        h.run(timed_frames(times[::2]))
    assert [get_attributes(pv)["x"] for pv in h.published] == list(range(0, 20, 2))
    assert h.stats["nMetadataMatched"] == 10
    assert h.stats["nMetadataDiscarded"] == 9
    assert h.stats["nMetadataPending"] == 1


def test_metadata_arriving_while_frames_flow(Metadata):
    times = [T0 + 0.01 * i for i in range(3)]
    frames = timed_frames(times)
    h = ProcessorHarness(Metadata, metadata=["pva://x"]).start()
    for i, (frame, t) in enumerate(zip(frames, times, strict=True)):
        h.put_metadata("x", metadata(10 + i, t))
        h.process(frame)
    assert [get_attributes(pv)["x"] for pv in h.published] == [10, 11, 12]


def test_frames_without_metadata_channels_pass_through(Metadata):
    frames = timed_frames([T0, T0 + 1])
    with ProcessorHarness(Metadata) as h:
        h.run(frames)
    assert h.published_ids == [1, 2]
    assert h.stats["nFramesWithFullMetadata"] == 2  # nothing was asked for


# --- split ----------------------------------------------------------------------------


def tile_attrs(pv) -> dict:
    return get_attributes(pv)


@pytest.mark.parametrize(
    "frame_shape,tile,grid",
    [((48, 64), (32, 24), (2, 2)), ((48, 96), (32, 24), (3, 2)), ((48, 64), (64, 48), (1, 1))],
)
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_split_gives_tiles_equal_to_slices(Split, frame_shape, tile, grid, dtype):
    nx, ny = tile
    frames = list(make_frames(2, shape=frame_shape, dtype=dtype, attributes={"gain": 2}))
    with ProcessorHarness(Split, {"nx": nx, "ny": ny}) as h:
        h.run(frames)
    n_tiles = grid[0] * grid[1]
    assert len(h.published) == 2 * n_tiles
    assert h.published_ids == [1] * n_tiles + [2] * n_tiles
    stamps = [ns(pv) for pv in h.published]
    assert all(b > a for a, b in zip(stamps, stamps[1:], strict=False))
    for k, pv in enumerate(h.published):
        frame = frames[k // n_tiles]
        a = tile_attrs(pv)
        ix, iy = a["tileIndexX"], a["tileIndexY"]
        assert (ix, iy) == ((k % n_tiles) % grid[0], (k % n_tiles) // grid[0])  # row by row
        assert (a["nTilesX"], a["nTilesY"]) == grid
        assert (a["tileOffsetX"], a["tileOffsetY"]) == (ix * nx, iy * ny)
        assert (a["frameSizeX"], a["frameSizeY"]) == (frame_shape[1], frame_shape[0])
        assert a["gain"] == 2
        expected = get_image(frame)[iy * ny : (iy + 1) * ny, ix * nx : (ix + 1) * nx]
        got = get_image(pv)
        assert got.dtype == expected.dtype
        assert got.tobytes() == np.ascontiguousarray(expected).tobytes()
        dims = pv["dimension"]
        assert [(d["size"], d["offset"], d["fullSize"]) for d in dims] == [
            (nx, ix * nx, frame_shape[1]),
            (ny, iy * ny, frame_shape[0]),
        ]
        assert get_data_timestamp(pv) == get_data_timestamp(frame)
    assert h.stats["nFramesSplit"] == 2 and h.stats["nTilesPublished"] == 2 * n_tiles
    check_stats_types(h)


@pytest.mark.parametrize("mode", [2, 3, 4])
def test_split_colour_frames(Split, mode):
    (frame,) = make_frames(1, shape=(48, 64, 3), color_mode=mode)
    with ProcessorHarness(Split, {"nx": 32, "ny": 24}) as h:
        h.process(frame)
    assert len(h.published) == 4
    for pv in h.published:
        a = tile_attrs(pv)
        x0, y0 = a["tileOffsetX"], a["tileOffsetY"]
        assert get_color_mode(pv) == mode
        assert np.array_equal(get_image(pv), get_image(frame)[y0 : y0 + 24, x0 : x0 + 32])


def test_split_indivisible_frame_is_counted_and_logged_once(Split, caplog):
    bad = list(make_frames(3, shape=(48, 50)))
    good = list(make_frames(1, shape=(48, 64), first_id=4))
    with caplog.at_level(logging.ERROR, logger="pvhpc"):
        with ProcessorHarness(Split, {"nx": 32, "ny": 24}) as h:
            h.run(bad + good)
    assert h.published_ids == [4, 4, 4, 4]  # the stream went on
    assert h.stats["nFramesRejected"] == 3
    assert h.stats["nFramesSplit"] == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "frame size 50x48 is not a multiple of the tile size 32x24" in errors[0]


def test_split_configuration(Split):
    with pytest.raises(UsageError, match="nx .* is required"):
        create_processor(Split, {"ny": 10})
    with pytest.raises(UsageError, match="ny must be a positive integer"):
        create_processor(Split, {"nx": 10, "ny": 0})
    (frame,) = make_frames(1, shape=(48, 64))
    h = ProcessorHarness(Split, {"nx": 32, "ny": 24}).start()
    h.configure({"nx": 16})
    h.process(frame)
    assert len(h.published) == 8


# --- stitch ---------------------------------------------------------------------------


def split_all(Split, frames, nx, ny) -> list:
    with ProcessorHarness(Split, {"nx": nx, "ny": ny}) as h:
        h.run(frames)
    return list(h.published)


def assert_same_frame(original, stitched) -> None:
    a, b = get_image(original), get_image(stitched)
    assert b.dtype == a.dtype and b.shape == a.shape
    assert np.ascontiguousarray(b).tobytes() == np.ascontiguousarray(a).tobytes()
    assert get_dims(stitched) == get_dims(original)
    assert get_color_mode(stitched) == get_color_mode(original)
    assert get_frame_id(stitched) == get_frame_id(original)
    assert get_value_field(stitched) == get_value_field(original)
    assert get_attributes(stitched) == get_attributes(original)
    assert get_data_timestamp(stitched) == get_data_timestamp(original)


def get_value_field(pv) -> str:
    return next(iter(pv["value"][0]))


@pytest.mark.parametrize(
    "dtype,shape,mode",
    [
        (np.uint8, (48, 64), None),
        (np.uint16, (48, 96), None),
        (np.float32, (48, 96), None),
        (np.uint8, (48, 96, 3), 2),
        (np.uint16, (48, 64, 3), 3),
        (np.float32, (48, 64, 3), 4),
    ],
)
def test_stitch_rebuilds_frames_bit_for_bit_in_any_order(Split, Stitch, dtype, shape, mode):
    options = {"color_mode": mode} if mode else {}
    frames = list(
        make_frames(5, shape=shape, dtype=dtype, attributes={"gain": 3}, seed=7, **options)
    )
    tiles = split_all(Split, frames, 32, 24)
    random.Random(1).shuffle(tiles)  # tiles of all frames, interleaved
    with ProcessorHarness(Stitch, {"nx": shape[1], "ny": shape[0]}) as h:
        h.run(tiles)
    assert sorted(h.published_ids) == [1, 2, 3, 4, 5]
    originals = {get_frame_id(f): f for f in frames}
    for stitched in h.published:
        assert_same_frame(originals[get_frame_id(stitched)], stitched)
        assert not set(get_attributes(stitched)) & {"tileIndexX", "nTilesX", "frameSizeX"}
    stamps = [ns(pv) for pv in h.published]
    assert len(set(stamps)) == len(stamps)
    stats = h.stats
    assert stats["nFramesStitched"] == 5
    assert stats["nTilesReceived"] == len(tiles)
    assert stats["nFramesPending"] == stats["nFramesPurged"] == stats["nTilesRejected"] == 0
    check_stats_types(h)


def test_stitch_takes_the_frame_size_from_the_tiles(Split, Stitch):
    frames = list(make_frames(2, shape=(48, 96), dtype=np.uint16))
    with ProcessorHarness(Stitch) as h:
        h.run(split_all(Split, frames, 32, 24))
    for original, stitched in zip(frames, h.published, strict=True):
        assert_same_frame(original, stitched)


def test_incomplete_frames_are_purged_after_newer_frames_complete(Split, Stitch):
    frames = list(make_frames(6, shape=(48, 64)))
    tiles = split_all(Split, frames, 32, 24)
    lost = tiles.pop(2)  # a tile of frame 1 never arrives...
    with ProcessorHarness(Stitch, {"nx": 64, "ny": 48, "purgeAfterFrames": 3}) as h:
        h.run(tiles[:3])
        assert h.stats["nFramesPending"] == 1
        h.run(tiles[3:])
        h.process(lost)  # ...until it is too late
    assert h.published_ids == [2, 3, 4, 5, 6]
    stats = h.stats
    assert stats["nFramesPurged"] == 1
    assert stats["nTilesPurged"] == 3
    assert stats["nTilesLate"] == 1
    assert stats["nFramesPending"] == 0


def test_incomplete_frames_are_purged_after_a_timeout(Split, Stitch, monkeypatch):
    module = sys.modules[Stitch.__module__]
    clock = {"now": 1000.0}

    class FakeTime:
        time_ns = staticmethod(__import__("time").time_ns)

        @staticmethod
        def monotonic():
            return clock["now"]

    monkeypatch.setattr(module, "time", FakeTime)
    a, b = make_frames(2, shape=(48, 64))
    tiles_a, tiles_b = split_all(Split, [a], 32, 24), split_all(Split, [b], 32, 24)
    h = ProcessorHarness(Stitch, {"purgeTimeout": 5, "purgeAfterFrames": 0}).start()
    h.run(tiles_a[:3])
    clock["now"] += 4.9
    h.process(tiles_b[0])
    assert h.stats["nFramesPurged"] == 0
    clock["now"] += 0.2
    h.process(tiles_b[1])
    assert h.stats["nFramesPurged"] == 1  # frame 1, 5.1 s old; frame 2 is 0.2 s old
    h.run(tiles_b[2:])
    h.stop()
    assert h.published_ids == [2]


def test_incomplete_frames_at_stop_are_counted(Split, Stitch, caplog):
    frames = list(make_frames(3, shape=(48, 64)))
    tiles = split_all(Split, frames, 32, 24)
    with caplog.at_level(logging.INFO, logger="pvhpc"):
        with ProcessorHarness(Stitch, {"nx": 64, "ny": 48}) as h:
            h.run(tiles[:4] + tiles[5:7] + tiles[8:11])
    assert h.published_ids == [1]
    assert h.stats["nFramesPurged"] == 2
    assert h.stats["nTilesPurged"] == 5
    assert any("2 incomplete frames dropped" in r.getMessage() for r in caplog.records)


def test_duplicate_tiles_and_unfit_tiles_are_counted(Split, Stitch, caplog):
    (frame,) = make_frames(1, shape=(48, 64))
    tiles = split_all(Split, [frame], 32, 24)
    (other,) = make_frames(1, shape=(48, 96), first_id=2)
    foreign = split_all(Split, [other], 32, 24)
    plain = list(make_frames(2, shape=(24, 32), first_id=3))
    with caplog.at_level(logging.ERROR, logger="pvhpc"):
        with ProcessorHarness(Stitch, {"nx": 64, "ny": 48}) as h:
            h.run([tiles[0], tiles[0], *foreign, *plain, *tiles[1:]])
    assert h.published_ids == [1]
    assert_same_frame(frame, h.published[0])
    stats = h.stats
    assert stats["nTilesDuplicate"] == 1
    assert stats["nTilesRejected"] == len(foreign) + 2
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 2  # one per kind of problem, not one per tile
    assert any("tile of a 96x48 frame, expected 64x48" in e for e in errors)
    assert any("not a tile" in e for e in errors)


def test_split_process_stitch_pipeline(Split, Stitch, Rotate):
    # Split, rotate every tile by 180 degrees, stitch: equals the frame with each tile
    # rotated in place, and nothing else changed.
    frames = list(make_frames(3, shape=(48, 96), dtype=np.uint16))
    tiles = split_all(Split, frames, 32, 24)
    with ProcessorHarness(Rotate, {"angle": 180}) as rotate:
        rotate.run(tiles)
    with ProcessorHarness(Stitch, {"nx": 96, "ny": 48}) as stitch:
        stitch.run(rotate.published)
    for original, stitched in zip(frames, stitch.published, strict=True):
        expected = get_image(original).copy()
        for y in range(0, 48, 24):
            for x in range(0, 96, 32):
                expected[y : y + 24, x : x + 32] = np.rot90(expected[y : y + 24, x : x + 32], 2)
        assert np.array_equal(get_image(stitched), expected)


def test_split_and_stitch_3840x2160_into_four_tiles(Split, Stitch):
    (frame,) = make_frames(1, shape=(2160, 3840), dtype=np.uint8)
    tiles = split_all(Split, [frame], 1920, 1080)
    assert [get_dims(t) for t in tiles] == [[1920, 1080]] * 4
    with ProcessorHarness(Stitch, {"nx": 3840, "ny": 2160}) as h:
        h.run(reversed(tiles))
    assert_same_frame(frame, h.published[0])
    assert get_timestamp(h.published[0]) > 0
