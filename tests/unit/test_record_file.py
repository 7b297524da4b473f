"""Recording files without a network: frames built in memory, written by the recorder,
read back by h5py with hdf5plugin (as other HDF5 readers do) and by our reader."""

from __future__ import annotations

import threading

import h5py
import hdf5plugin  # noqa: F401 - registers the lz4, bitshuffle and blosc filters
import numpy as np
import pytest

from pvhpc.errors import UsageError
from pvhpc.ntnda import get_attributes, get_codec, get_image, make_frame
from pvhpc.processors.recorder import settings_from_config
from pvhpc.record import Recorder, Recording, RecordSettings, capture_frame, parse_trigger
from pvhpc.record.recorder import check_output_path
from pvhpc.simulator import SimulatorConfig
from pvhpc.simulator import frames as frames_module
from pvhpc.simulator.replay import Replay

ATTRS = {"exposure": 0.25, "gain": np.int32(3), "mode": "fast", "flag": np.uint16(7)}


def image(k: int, shape=(12, 16), dtype=np.uint16) -> np.ndarray:
    return ((np.arange(np.prod(shape)).reshape(shape) * (k + 1)) % 1000).astype(dtype)


def record(path, n=5, codec=None, first_id=1, t0=1000.0, gaps=None, **settings) -> Recorder:
    rec = Recorder(RecordSettings(str(path), channel="cam", metadata={"m": "ca"}, **settings))
    t = t0
    for k in range(n):
        t += gaps[k] if gaps else 0.01
        frame = make_frame(image(k), first_id + k, codec=codec, time_stamp=t,
                           data_time_stamp=t - 0.001, attributes=ATTRS)  # fmt: skip
        rec.add_frame(capture_frame(frame, arrival=t + 0.002))
        rec.add_metadata("m", float(k), t, t + 0.002)
    rec.close()
    return rec


@pytest.mark.parametrize("codec", [None, "lz4", "bslz4", "blosc"])
def test_frames_are_stored_as_carried_and_decode_in_any_hdf5_reader(tmp_path, codec):
    path = tmp_path / "run.h5"
    rec = record(path, codec=codec)
    assert rec.n_recorded == 5 and rec.files == [str(path)]
    with h5py.File(path) as f:
        data = f["entry/data/data"]
        assert data.chunks == (1, 12, 16) and data.attrs["codec"] == (codec or "")
        if codec:
            assert data.id.get_create_plist().get_filter(0)[0] == {"lz4": 32004, "bslz4": 32008,
                                                                   "blosc": 32001}[codec]  # fmt: skip
        np.testing.assert_array_equal(data[()], np.array([image(k) for k in range(5)]))
        assert f["entry/instrument/detector/data"].id == data.id  # the same dataset
        np.testing.assert_array_equal(f["entry/frames/uniqueId"][()], [1, 2, 3, 4, 5])
        np.testing.assert_allclose(np.diff(f["entry/frames/timeStamp"][()]), 0.01, atol=1e-6)
        nd = f["entry/instrument/NDAttributes"]
        assert nd["gain"].dtype == np.int32 and nd["flag"].dtype == np.uint16
        assert list(nd["mode"].asstr()[()]) == ["fast"] * 5
        assert f["entry/metadata/m"].attrs["protocol"] == "ca"
        np.testing.assert_array_equal(f["entry/metadata/m/value"][()], [0, 1, 2, 3, 4])
    with Recording(str(path)) as r:
        assert r.codec == (codec or "") and r.timing() == "timeStamp"
        for k in range(5):
            np.testing.assert_array_equal(r.image(k), image(k))


@pytest.mark.parametrize("codec", [None, "bslz4"])
def test_replay_builds_the_recorded_frames_with_their_bytes_and_attributes(tmp_path, codec):
    path = tmp_path / "run.h5"
    record(path, codec=codec)
    config = SimulatorConfig(input_file=str(path), timing="original", speed=2.0)
    replay = Replay(config)
    try:
        assert replay.n == 5 and config.compression_codec == codec
        np.testing.assert_allclose([replay.due(i) for i in range(5)], np.arange(5) * 0.005)
        frame = replay.frame(3)
        assert get_codec(frame) == (codec or "")
        np.testing.assert_array_equal(get_image(frame), image(3))
        attrs = get_attributes(frame)
        assert attrs["exposure"] == 0.25 and attrs["gain"] == 3 and attrs["mode"] == "fast"
        assert [replay.unique_id(i) for i in range(5)] == [1, 2, 3, 4, 5]
        assert replay.data_lag_ns(2) == pytest.approx(1_000_000, abs=1000)
        # Metadata updates go before the frame they were recorded with.
        assert [(e.index, e.value) for e in replay.metadata] == [(k, float(k)) for k in range(5)]
    finally:
        replay.close()


def test_a_loop_continues_the_ids_and_the_schedule(tmp_path):
    path = tmp_path / "run.h5"
    record(path, n=4, first_id=11, gaps=[0.01, 0.01, 0.05, 0.01])
    replay = Replay(SimulatorConfig(input_file=str(path), timing="original", loop=True))
    try:
        assert [replay.unique_id(i) for i in range(9)] == list(range(11, 20))
        dues = [replay.due(i) for i in range(9)]
        assert np.all(np.diff(dues) > 0)
        # the recorded gaps again in the second loop (0.01, 0.05, 0.01)
        np.testing.assert_allclose(np.diff(dues[4:8]), [0.01, 0.05, 0.01], atol=1e-6)
        assert replay.n_total == 0
    finally:
        replay.close()


def test_a_recording_larger_than_the_memory_budget_is_read_ahead(tmp_path, monkeypatch):
    path = tmp_path / "run.h5"
    record(path, n=7, codec="lz4")
    monkeypatch.setattr(frames_module, "DEFAULT_MEMORY_BUDGET", 5 * image(0).nbytes)
    replay = Replay(SimulatorConfig(input_file=str(path), cache_size=3, ids="new"))
    try:
        assert replay._frames is None  # the prefetch path
        for i in range(10):
            np.testing.assert_array_equal(get_image(replay.frame(i)), image(i % 7))
        assert replay.unique_id(9) == 10
    finally:
        replay.close()


def test_limits_and_numbered_files(tmp_path):
    rec = record(tmp_path / "a.h5", n=7, file_frames=3)
    assert [p.rsplit("/", 1)[1] for p in rec.files] == ["a_0001.h5", "a_0002.h5", "a_0003.h5"]
    with Recording(rec.files[1]) as r:
        assert list(r.ids) == [4, 5, 6]
    rec = record(tmp_path / "b.h5", n=7, max_frames=4)
    assert (rec.n_recorded, rec.n_not_recorded) == (4, 3)
    assert rec.finished == "frame limit of 4 reached" and not rec.failed
    frame_bytes = image(0).nbytes
    rec = record(tmp_path / "c.h5", n=7, max_bytes=2 * frame_bytes + 10)
    assert (rec.n_recorded, rec.n_not_recorded) == (2, 5) and "size limit" in rec.finished
    # A frame of another shape cannot join the file: it starts the next one.
    rec = Recorder(RecordSettings(str(tmp_path / "d.h5")))
    rec.add_frame(capture_frame(make_frame(image(0), 1), 1.0))
    rec.add_frame(capture_frame(make_frame(image(1, (4, 4)), 2), 2.0))
    rec.close()
    assert [p.rsplit("/", 1)[1] for p in rec.files] == ["d.h5", "d_0002.h5"]


def test_output_paths_are_checked_and_never_overwritten(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        check_output_path(RecordSettings(str(tmp_path / "no" / "run.h5")))
    (tmp_path / "run.h5").write_bytes(b"")
    with pytest.raises(UsageError, match="never overwrites"):
        check_output_path(RecordSettings(str(tmp_path / "run.h5")))
    check_output_path(RecordSettings(str(tmp_path / "run.h5"), ring_seconds=1))  # run_0001.h5


def test_the_ring_dumps_exactly_its_last_seconds(tmp_path):
    trigger = parse_trigger("pva://shutter<0.5")
    rec = Recorder(
        RecordSettings(
            str(tmp_path / "ring.h5"),
            ring_seconds=1.0,
            trigger=trigger,
            metadata={"shutter": "pva"},
        )  # fmt: skip
    )
    for k in range(50):  # 10 frames a second, arrival 100.0 ... 104.9
        t = 100.0 + k / 10
        rec.add_frame(capture_frame(make_frame(image(k), k + 1, time_stamp=t), t))
        rec.add_metadata("shutter", 1.0 if k < 30 else 0.0, t, t)  # closes at frame 31
    message = rec.dump(now=104.95)
    assert "writing 10 frames, ids 41-50" in message
    rec.close()
    assert rec.n_dumps == 2  # the trigger, then the command
    with Recording(rec.files[0]) as first, Recording(rec.files[1]) as second:
        assert list(first.ids) == list(range(21, 32))  # 1 s before the shutter closed
        assert list(second.ids) == list(range(41, 51))
        shutter = first.metadata[0]
        assert shutter.values[0] == 1.0 and shutter.values[-1] == 0.0


def test_the_ring_keeps_within_its_memory_limit_and_a_dump_says_what_it_covers(tmp_path):
    size = image(0).nbytes  # 12 x 16 uint16: 384 bytes a frame
    rec = Recorder(RecordSettings(str(tmp_path / "ring.h5"), ring_seconds=2.0, ring_bytes=5 * size))
    for k in range(50):  # 10 frames a second: 2 s would be 20 frames, the limit holds 5
        t = 100.0 + k / 10
        rec.add_frame(capture_frame(make_frame(image(k), k + 1, time_stamp=t), t))
    stats = rec.stats()
    assert stats["ringFrames"] == 5 and stats["ringBytes"] == 5 * size
    assert stats["nRingEvicted"] == 45  # every frame before 46 left for the limit, not age
    message = rec.dump(now=104.95)
    assert "writing 5 frames, ids 46-50, of the last 2 s" in message, message
    assert "only the last 0.45 s" in message and "--ring-memory 1.9 kB" in message, message
    rec.close()
    with Recording(rec.files[0]) as dumped:
        assert list(dumped.ids) == list(range(46, 51))
        np.testing.assert_array_equal(dumped.image(4), image(49))


def test_dumps_not_written_yet_share_one_memory_limit(tmp_path):
    """A dump holds its frames until written; dumps queued behind a slow one (a trigger
    firing again) together get one --ring-memory besides the ring, the newest frames
    first, so that memory stays within twice the limit however many are queued."""
    size = image(0).nbytes
    rec = Recorder(RecordSettings(str(tmp_path / "ring.h5"), ring_seconds=2.0, ring_bytes=5 * size))
    gate = threading.Event()
    write = rec._write_dump
    rec._write_dump = lambda *job: (gate.wait(10), write(*job))  # a slow disk
    for k in range(5):
        t = 100.0 + k / 10
        rec.add_frame(capture_frame(make_frame(image(k), k + 1, time_stamp=t), t))
    first = rec.dump(now=100.45)
    assert "writing 5 frames, ids 1-5" in first and "only the last" not in first, first
    for k in range(5, 8):
        t = 100.0 + k / 10
        rec.add_frame(capture_frame(make_frame(image(k), k + 1, time_stamp=t), t))
    second = rec.dump(now=100.75)
    assert "writing 1 frames, ids 8-8" in second, second
    assert "4 older frames left out" in second and "hold 1.9 kB" in second, second
    gate.set()
    rec.close()
    assert rec.stats()["nDumpTrimmed"] == 4 and rec._dump_bytes == 0
    with Recording(rec.files[0]) as a, Recording(rec.files[1]) as b:
        assert list(a.ids) == [1, 2, 3, 4, 5] and list(b.ids) == [8]


def test_a_ring_within_its_memory_limit_dumps_without_a_remark(tmp_path):
    rec = Recorder(RecordSettings(str(tmp_path / "ring.h5"), ring_seconds=1.0))
    assert rec.settings.ring_limit > 1 << 20  # a quarter of the machine's memory by default
    for k in range(30):
        t = 100.0 + k / 10
        rec.add_frame(capture_frame(make_frame(image(k), k + 1, time_stamp=t), t))
    message = rec.dump(now=102.95)
    assert "ids 21-30" in message and "only the last" not in message, message
    assert rec.stats()["nRingEvicted"] == 0
    rec.close()


def test_a_dump_says_which_frames_of_another_shape_it_left_out(tmp_path, caplog):
    rec = Recorder(RecordSettings(str(tmp_path / "ring.h5"), ring_seconds=10.0))
    for k in range(6):  # frames 4-6 are smaller: a detector whose ROI changed
        shape = (12, 16) if k < 3 else (4, 4)
        t = 100.0 + k / 10
        rec.add_frame(capture_frame(make_frame(image(k, shape), k + 1, time_stamp=t), t))
    assert "writing 6 frames" in rec.dump(now=100.55)
    rec.close()
    assert rec.n_dumped == 3
    assert "3 frame(s) left out, their shape, type or codec differs" in caplog.text
    with Recording(rec.files[0]) as dumped:
        assert list(dumped.ids) == [1, 2, 3]


def test_trigger_conditions_fire_on_an_edge():
    trigger = parse_trigger(" ca://x >= 2 ")
    assert trigger.endpoint.protocol == "ca" and trigger.threshold == 2
    assert [trigger.update(v) for v in [5, 1, 2, 3, 0, "junk", 4]] == [
        False, False, True, False, False, False, True,
    ]  # fmt: skip
    for bad in ["x", "x<", "<1", "x<abc", "http://x<1", "x<nan"]:
        with pytest.raises(UsageError, match="^--trigger: "):
            parse_trigger(bad)


def test_files_that_are_no_recording_are_refused(tmp_path):
    with h5py.File(tmp_path / "plain.h5", "w") as f:
        f["data"] = np.zeros((2, 3, 3))
    with pytest.raises(UsageError, match="not a recording"):
        Recording(str(tmp_path / "plain.h5"))
    (tmp_path / "junk.h5").write_bytes(b"junk")
    with pytest.raises(UsageError, match="cannot open"):
        Recording(str(tmp_path / "junk.h5"))
    record(tmp_path / "one.h5", n=1)
    with pytest.raises(UsageError, match="no recorded timing"):
        Replay(SimulatorConfig(input_file=str(tmp_path / "one.h5"), timing="original"))


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ({}, "outputFile"),
        ({"outputFile": "r.h5", "ringBytes": 10**6}, "ringBytes needs ringSeconds"),
        ({"outputFile": "r.h5", "ringSeconds": 2, "ringBytes": -1}, "ringBytes must be"),
        ({"outputFile": "r.h5", "trigger": "pva://s<1"}, "trigger needs ringSeconds"),
        ({"outputFile": "r.h5", "maxFrames": 1.5}, "maxFrames must be"),
    ],
)
def test_stream_recorder_configuration_mistakes_name_the_key(config, words):
    with pytest.raises(UsageError, match=words):
        settings_from_config(config)


def test_stream_recorder_configuration_carries_the_ring_limit():
    s = settings_from_config({"outputFile": "r.h5", "ringSeconds": 2, "ringBytes": 10**6})
    assert (s.ring_seconds, s.ring_bytes, s.ring_limit) == (2.0, 10**6, 10**6)


def test_attribute_columns_take_their_type_from_the_first_value_and_fill_the_rest(tmp_path):
    """An attribute whose source is not connected has an empty value (areaDetector), a
    value may not fit its column's type: the recording goes on, such rows hold the
    fill (0, NaN, ""), and a column that first had no value gets the type of the
    first one it gets."""
    path = tmp_path / "run.h5"
    per_frame = [
        {"n": np.int32(5), "late": None, "never": None, "s": "a", "i": np.int16(1)},
        {"n": None, "late": None, "never": None, "s": 7, "i": 2.7},
        {"n": "text", "late": 2.5, "never": None, "i": 3.0},
        {"n": 2**40, "late": "x", "never": None, "s": None},
    ]
    rec = Recorder(RecordSettings(str(path), channel="cam", flush_period=0.0))
    for k, attributes in enumerate(per_frame):
        rec.add_frame(capture_frame(make_frame(image(k), k + 1, attributes=attributes), 1.0 + k))
        rec.tick()  # a flush after every frame: columns are written in steps
    rec.close()
    assert rec.n_recorded == 4
    with h5py.File(path) as f:
        nd = f["entry/instrument/NDAttributes"]
        assert nd["n"].dtype == np.int32 and nd["n"][()].tolist() == [5, 0, 0, 0]
        assert nd["i"].dtype == np.int16 and nd["i"][()].tolist() == [1, 0, 3, 0]
        assert nd["late"].dtype == np.float64
        np.testing.assert_array_equal(nd["late"][()], [np.nan, np.nan, 2.5, np.nan])
        assert nd["never"].dtype == np.float64 and np.isnan(nd["never"][()]).all()
        assert list(nd["s"].asstr()[()]) == ["a", "7", "", ""]
        assert nd["n"].attrs["pvType"] == 3 and nd["late"].attrs["pvType"] == 10


def test_attribute_names_hdf5_refuses_or_that_collide_keep_their_own_columns(tmp_path):
    """'.' and '..' are no HDF5 names, 'a/b' becomes 'a_b', which another attribute may
    already be called: each still gets a column, its real name in NDAttrName."""
    path = tmp_path / "run.h5"
    rec = Recorder(RecordSettings(str(path), channel="cam"))
    names = {".": 1.0, "..": 2.0, "a_b": 3.0, "a/b": 4.0}
    for k in range(2):
        rec.add_frame(capture_frame(make_frame(image(k), k + 1, attributes=names), 1.0 + k))
    rec.close()
    assert rec.n_recorded == 2
    with h5py.File(path) as f:
        nd = f["entry/instrument/NDAttributes"]
        got = {nd[key].attrs["NDAttrName"]: nd[key][()].tolist() for key in nd}
    assert got == {"ColorMode": [0, 0], ".": [1.0] * 2, "..": [2.0] * 2, "a_b": [3.0] * 2,
                   "a/b": [4.0] * 2}  # fmt: skip
    with Recording(str(path)) as r:
        assert sorted(a.name for a in r.attributes) == sorted(["ColorMode", *names])


def test_jpeg_frames_are_recorded_as_the_pixels_they_decode_to(tmp_path):
    """No HDF5 filter decodes NDCodec's jpeg: such frames are kept decoded."""
    path = tmp_path / "run.h5"
    rgb = np.random.default_rng(2).integers(0, 255, (12, 16, 3), dtype=np.uint8)
    frames = [make_frame(rgb, k + 1, codec="jpeg") for k in range(3)]
    rec = Recorder(RecordSettings(str(path), channel="cam"))
    for k, frame in enumerate(frames):
        rec.add_frame(capture_frame(frame, 1.0 + k))
    rec.close()
    with Recording(str(path)) as r:
        assert r.codec == "" and r.n_frames == 3
        for k, frame in enumerate(frames):
            np.testing.assert_array_equal(r.image(k), get_image(frame))
