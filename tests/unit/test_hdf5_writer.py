"""Hdf5AdImageWriter: frames, ids and timestamps in files of nImagesPerFile; last file trimmed."""

from __future__ import annotations

import os

import numpy as np
import pytest

h5py = pytest.importorskip("h5py")

from pvhpc.errors import UsageError  # noqa: E402
from pvhpc.loading import create_processor, load_processor_class  # noqa: E402
from pvhpc.processors import Hdf5AdImageWriter  # noqa: E402
from pvhpc.processors.ad_image import get_data_timestamp, get_timestamp  # noqa: E402
from pvhpc.testing import ProcessorHarness, make_frame, make_frames  # noqa: E402


def writer(tmp_path, **config):
    config.setdefault("outputDirectory", str(tmp_path))
    return ProcessorHarness(Hdf5AdImageWriter, config, processor_id=config.pop("pid", 2))


def test_files_of_n_images_and_a_trimmed_last_file(tmp_path):
    frames = list(make_frames(10, (6, 8), "uint16", first_id=101))
    with writer(tmp_path, nImagesPerFile=4) as h:
        h.run(frames)
        assert h.stats["nFilesWritten"] == 2  # the third file is still open
    assert sorted(os.listdir(tmp_path)) == ["000001.2.h5", "000002.2.h5", "000003.2.h5"]
    images = h.published_images
    for file_id, first, count in [(1, 0, 4), (2, 4, 4), (3, 8, 2)]:
        with h5py.File(tmp_path / f"{file_id:06d}.2.h5", "r") as f:
            data = f["/entry/data/data"]
            assert data.shape == (count, 6, 8) and data.dtype == np.uint16
            np.testing.assert_array_equal(data[()], np.stack(images[first : first + count]))
            ids = f["/entry/data/uniqueId"][()]
            assert ids.tolist() == list(range(101 + first, 101 + first + count))
            stamps = f["/entry/data/timeStamp"][()]
            assert stamps.tolist() == [get_timestamp(fr) for fr in frames[first : first + count]]
            dstamps = f["/entry/data/dataTimeStamp"][()]
            assert dstamps.tolist() == [
                get_data_timestamp(fr) for fr in frames[first : first + count]
            ]
            assert data.attrs["nImages"] == count and data.attrs["processorId"] == 2
    stats = h.stats
    assert stats["nFilesWritten"] == 3 and stats["nFramesWritten"] == 10
    assert stats["nBytesWritten"] == sum(
        os.path.getsize(tmp_path / n) for n in os.listdir(tmp_path)
    )
    assert stats["nImageBytesWritten"] == 10 * 6 * 8 * 2
    assert stats["nErrors"] == 0 and stats["frameWriteRate"] > 0 and stats["currentFileId"] == 3
    assert h.published == frames and h.returned == frames
    h.user_stats_object()


def test_exactly_full_files_leave_no_empty_file(tmp_path):
    with writer(tmp_path, nImagesPerFile=3) as h:
        h.run(make_frames(6, (2, 2)))
    assert sorted(os.listdir(tmp_path)) == ["000001.2.h5", "000002.2.h5"]


def test_one_file_for_everything_and_custom_names(tmp_path):
    config = {
        "nImagesPerFile": 0,
        "datasetName": "images",
        "outputFileNameFormat": "run/p{processorId}_{outputFileId}.hdf5",
        "pid": 7,
    }
    with writer(tmp_path, **config) as h:
        h.run(make_frames(100, (3, 5), "float32"))  # beyond the initial allocation
    with h5py.File(tmp_path / "run" / "p7_1.hdf5", "r") as f:
        assert f["images"].shape == (100, 3, 5)
        np.testing.assert_array_equal(f["images"][()], np.stack(h.published_images))
        assert f["uniqueId"][()].tolist() == list(range(1, 101))


@pytest.mark.parametrize(
    "dtype",
    [
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
    ],
)
def test_every_dtype_stored_exactly(tmp_path, dtype):
    with writer(tmp_path, nImagesPerFile=5) as h:
        h.run(make_frames(3, (4, 7), dtype))
    with h5py.File(tmp_path / "000001.2.h5", "r") as f:
        data = f["/entry/data/data"][()]
    assert data.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(data, np.stack(h.published_images))


@pytest.mark.parametrize("mode", [2, 3, 4])
def test_rgb_frames_stored_as_ny_nx_3(tmp_path, mode):
    images = [
        np.random.default_rng(i).integers(0, 255, (5, 6, 3), dtype=np.uint8) for i in range(3)
    ]
    with writer(tmp_path) as h:
        h.run(make_frame(im, i + 1, color_mode=mode) for i, im in enumerate(images))
    with h5py.File(tmp_path / "000001.2.h5", "r") as f:
        np.testing.assert_array_equal(f["/entry/data/data"][()], np.stack(images))


def test_compressed_frames_are_stored_decompressed(tmp_path):
    with writer(tmp_path) as h:
        h.run(make_frames(4, (16, 16), "uint16", codec="lz4"))
    with h5py.File(tmp_path / "000001.2.h5", "r") as f:
        np.testing.assert_array_equal(f["/entry/data/data"][()], np.stack(h.published_images))


@pytest.mark.parametrize("codec", ["lz4", "bslz4", "blosc"])
def test_compressed_frames_kept_compressed_decode_through_the_hdf5_filter(tmp_path, codec):
    """keepCompression: the frame's bytes are the chunk (nothing decompressed), which
    h5py with hdf5plugin decodes to the frame's pixels; a smaller file for it."""
    import hdf5plugin  # noqa: F401 - the lz4, bitshuffle and blosc filters

    from pvhpc.record.chunks import FILTERS

    ramps = [np.add.outer(np.arange(32), np.arange(48)).astype(np.uint16) + k for k in range(6)]
    frames = [make_frame(im, k + 1, codec=codec, attributes={"k": k}) for k, im in enumerate(ramps)]
    for keep, name in ((True, "kept.h5"), (False, "plain.h5")):
        with writer(tmp_path, keepCompression=keep, outputFileNameFormat=name,
                    nImagesPerFile=0) as h:  # fmt: skip
            h.run(frames)
        assert h.stats["nImageBytesWritten"] == 6 * 32 * 48 * 2
    with h5py.File(tmp_path / "kept.h5", "r") as f:
        data = f["/entry/data/data"]
        assert data.attrs["codec"] == codec
        assert data.id.get_create_plist().get_filter(0)[0] == FILTERS[codec]
        np.testing.assert_array_equal(data[()], np.stack(ramps))
        assert f["/entry/instrument/NDAttributes/k"][()].tolist() == list(range(6))
        assert f["/entry/data/uniqueId"][()].tolist() == list(range(1, 7))
    with h5py.File(tmp_path / "plain.h5", "r") as f:
        assert "codec" not in f["/entry/data/data"].attrs
    assert os.path.getsize(tmp_path / "kept.h5") < os.path.getsize(tmp_path / "plain.h5")


def test_keep_compression_stores_other_frames_as_before_and_a_new_codec_starts_a_file(tmp_path):
    image = np.arange(30, dtype=np.uint8).reshape(5, 6)
    rgb = np.random.default_rng(1).integers(0, 255, (5, 6, 3), dtype=np.uint8)
    frames = [
        make_frame(image, 1),  # uncompressed: the image
        make_frame(image, 2, codec="lz4"),  # another layout: the next file
        make_frame(image, 3, codec="blosc"),  # another codec: the next file
        make_frame(rgb, 4, color_mode=3, codec="lz4"),  # RGB2: stored transposed, decoded
    ]
    with writer(tmp_path, keepCompression="yes", nImagesPerFile=10) as h:
        h.run(frames)
    assert sorted(os.listdir(tmp_path)) == [f"00000{i}.2.h5" for i in range(1, 5)]
    codecs = []
    for i in range(1, 5):
        with h5py.File(tmp_path / f"00000{i}.2.h5", "r") as f:
            codecs.append(f["/entry/data/data"].attrs.get("codec", ""))
            if i == 4:
                np.testing.assert_array_equal(f["/entry/data/data"][0], rgb)
    assert codecs == ["", "lz4", "blosc", ""]


def test_a_different_frame_shape_starts_a_new_file(tmp_path):
    frames = [make_frame(np.zeros((4, 4), np.uint8), 1), make_frame(np.zeros((4, 4), np.uint8), 2)]
    frames.append(make_frame(np.ones((2, 3), np.uint8), 3))
    frames.append(make_frame(np.ones((2, 3), np.uint16), 4))
    with writer(tmp_path, nImagesPerFile=10) as h:
        h.run(frames)
    shapes = {}
    for name in sorted(os.listdir(tmp_path)):
        with h5py.File(tmp_path / name, "r") as f:
            d = f["/entry/data/data"]
            shapes[name] = (d.shape, str(d.dtype), f["/entry/data/uniqueId"][()].tolist())
    assert shapes == {
        "000001.2.h5": ((2, 4, 4), "uint8", [1, 2]),
        "000002.2.h5": ((1, 2, 3), "uint8", [3]),
        "000003.2.h5": ((1, 2, 3), "uint16", [4]),
    }


def test_stop_without_frames_writes_nothing(tmp_path):
    with writer(tmp_path):
        pass
    assert os.listdir(tmp_path) == []


def test_configure_applies_from_the_next_file(tmp_path):
    with writer(tmp_path, nImagesPerFile=2) as h:
        h.run(make_frames(3, (2, 2)))
        h.configure({"outputDirectory": str(tmp_path / "b"), "nImagesPerFile": 5})
        h.run(make_frames(3, (2, 2), first_id=4))
    with h5py.File(tmp_path / "000002.2.h5", "r") as f:  # opened before configure
        assert f["/entry/data/uniqueId"][()].tolist() == [3, 4]
    with h5py.File(tmp_path / "b" / "000003.2.h5", "r") as f:
        assert f["/entry/data/uniqueId"][()].tolist() == [5, 6]


def test_attribute_and_compression_changes_apply_from_the_next_file(tmp_path):
    """A file keeps what it was opened with: attributes go on being written and
    compressed frames stay decompressed until it is full."""
    frames = [
        make_frame(np.full((4, 4), k, np.uint16), k, codec="lz4", attributes={"T": 20.0 + k})
        for k in range(1, 7)
    ]
    with writer(tmp_path, nImagesPerFile=4) as h:
        h.run(frames[:2])
        h.configure({"attributeGroup": "", "keepCompression": True})
        h.run(frames[2:])
    with h5py.File(tmp_path / "000001.2.h5", "r") as f:
        assert f["/entry/data/uniqueId"][()].tolist() == [1, 2, 3, 4]
        assert f["/entry/instrument/NDAttributes/T"][()].tolist() == [21.0, 22.0, 23.0, 24.0]
        assert "codec" not in f["/entry/data/data"].attrs
    with h5py.File(tmp_path / "000002.2.h5", "r") as f:
        assert f["/entry/data/uniqueId"][()].tolist() == [5, 6]
        assert "instrument" not in f["/entry"] and f["/entry/data/data"].attrs["codec"] == "lz4"


def test_bad_configuration_is_a_usage_error(tmp_path):
    cls = load_processor_class(None, "pvapy.hpc.hdf5AdImageWriter.Hdf5AdImageWriter")
    assert cls is Hdf5AdImageWriter
    out = str(tmp_path)
    for config, message in [
        ({"outputFileNameFormat": "{uniqueId}.h5"}, r"unknown field \{uniqueId\}"),
        ({"outputFileNameFormat": "data.h5"}, r"no \{outputFileId\}.*overwrite"),
        ({"nImagesPerFile": "many"}, "nImagesPerFile 'many'"),
        ({"datasetName": "/entry/data/uniqueId"}, "beside the images"),
        ({"datasetName": "/"}, "needs a dataset name"),
        ({"attributeGroup": "entry/data"}, "attributeGroup '/entry/data'.*a group of their own"),
        ({"datasetName": "/a/b", "attributeGroup": "/a/b/c"}, "a group of their own"),
        ({"attributeGroup": "/entry"}, "a group of their own, not holding those"),
        ({"attributeGroup": "/"}, "a group of their own, not holding those"),
        ({"keepCompression": "perhaps"}, "keepCompression 'perhaps': give true or false"),
        ({"outputDirectory": os.path.join(out, "f", "x")}, "cannot create it"),
    ]:
        (tmp_path / "f").write_text("")
        config.setdefault("outputDirectory", out)
        with pytest.raises(UsageError, match=message):
            create_processor(cls, config)
    # One file for the whole run needs no file id.
    create_processor(
        cls, {"outputDirectory": out, "outputFileNameFormat": "all.h5", "nImagesPerFile": 0}
    )


def test_write_error_is_counted_and_the_stream_goes_on(tmp_path):
    frames = list(make_frames(3, (2, 2)))
    with writer(tmp_path, nImagesPerFile=10) as h:
        h.process(frames[0])
        h.processor._file.file.close()  # the file vanishes under the writer
        with pytest.raises(Exception):  # noqa: B017 - h5py's own error type
            h.process(frames[1])
        assert h.stats["nErrors"] == 1
        h.process(frames[2])  # a new file
    assert h.stats["nErrors"] == 1 and h.published == frames
    with h5py.File(tmp_path / "000002.2.h5", "r") as f:
        assert f["/entry/data/uniqueId"][()].tolist() == [3]


def test_bad_frame_does_not_disturb_the_open_file(tmp_path):
    bad = make_frame(np.zeros((2, 2), np.uint8), 2)
    bad["dimension"] = [{"size": 3}, {"size": 3}]
    frames = [make_frame(np.zeros((2, 2), np.uint8), i) for i in (1, 3)]
    with writer(tmp_path) as h:
        h.run([frames[0], bad, frames[1]], catch_errors=True)
    assert len(h.errors) == 1 and h.stats["nErrors"] == 1
    with h5py.File(tmp_path / "000001.2.h5", "r") as f:
        assert f["/entry/data/uniqueId"][()].tolist() == [1, 3]


def test_attributes_are_written_one_value_per_frame_as_areadetector_does(tmp_path):
    """The frames' NTNDArray attributes go to /entry/instrument/NDAttributes, one
    dataset per name in the attribute's type; an attribute that appears late (past
    the first write of the values) has the fill before, a string one its text."""
    n = 1100
    frames = [
        make_frame(
            np.full((2, 3), k, np.uint16),
            k,
            attributes={
                "Temperature": 20.0 + k,
                "Counter": np.uint32(k),
                "Model": "cam",
                **({"Late": np.int16(-k)} if k > 1050 else {}),
            },
        )
        for k in range(1, n + 1)
    ]
    with writer(tmp_path, nImagesPerFile=0, outputFileNameFormat="run.h5") as h:
        h.run(frames)
    with h5py.File(tmp_path / "run.h5", "r") as f:
        nd = f["/entry/instrument/NDAttributes"]
        assert sorted(nd) == ["ColorMode", "Counter", "Late", "Model", "Temperature"]
        np.testing.assert_array_equal(nd["Temperature"][()], 20.0 + np.arange(1, n + 1))
        assert nd["Counter"].dtype == np.uint32
        assert nd["Counter"][()].tolist() == list(range(1, n + 1))
        assert list(nd["Model"].asstr()[()]) == ["cam"] * n
        late = nd["Late"][()]
        assert late.dtype == np.int16 and late.shape == (n,)
        assert late[:1050].tolist() == [0] * 1050
        assert late[1050:].tolist() == [-k for k in range(1051, n + 1)]
        assert nd["Late"].attrs["NDAttrName"] == "Late"
        assert f["/entry/data/data"].shape == (n, 2, 3)


def test_attribute_group_elsewhere_or_none(tmp_path):
    frame = make_frame(np.zeros((2, 2), np.uint8), 1, attributes={"x": 1.5})
    with writer(tmp_path, nImagesPerFile=1, outputFileNameFormat="a.h5",
                attributeGroup="/meta/attrs") as h:  # fmt: skip
        h.run([frame])
    with h5py.File(tmp_path / "a.h5", "r") as f:
        assert f["/meta/attrs/x"][()].tolist() == [1.5]
        assert "instrument" not in f["/entry"]
    with writer(tmp_path, nImagesPerFile=1, outputFileNameFormat="b.h5", attributeGroup="") as h:
        h.run([frame])
    with h5py.File(tmp_path / "b.h5", "r") as f:
        assert list(f) == ["entry"] and list(f["/entry"]) == ["data"]
