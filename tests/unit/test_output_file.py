"""AdOutputFileProcessor: one exact file per frame, names from the format, clear errors."""

from __future__ import annotations

import os

import numpy as np
import pvaccess as pva
import pytest

pytest.importorskip("PIL")

from PIL import Image  # noqa: E402

from pvhpc.errors import UsageError  # noqa: E402
from pvhpc.loading import create_processor, load_processor_class  # noqa: E402
from pvhpc.processors import AdOutputFileProcessor  # noqa: E402
from pvhpc.testing import ProcessorHarness, make_frame, make_frames  # noqa: E402


def read(path):
    with Image.open(path) as im:
        return np.asarray(im)


def harness(tmp_path, name_format="{uniqueId:06d}.tiff", **kw):
    config = {"outputDirectory": str(tmp_path / "out"), "outputFileNameFormat": name_format}
    return ProcessorHarness(AdOutputFileProcessor, config, **kw)


@pytest.mark.parametrize("ext", ["tiff", "tif", "png"])
@pytest.mark.parametrize("dtype", ["uint8", "uint16", "bool"])
def test_lossless_formats_read_back_pixel_for_pixel(tmp_path, ext, dtype):
    frames = list(make_frames(3, (17, 23), dtype, first_id=5))
    with harness(tmp_path, "img_{uniqueId:04d}." + ext) as h:
        h.run(frames)
    for frame, original in zip(frames, h.published_images, strict=True):
        path = tmp_path / "out" / f"img_{frame['uniqueId']:04d}.{ext}"
        back = read(path)
        assert back.shape == (17, 23)
        np.testing.assert_array_equal(back, original)
    assert sorted(os.listdir(tmp_path / "out")) == [f"img_{i:04d}.{ext}" for i in (5, 6, 7)]


@pytest.mark.parametrize("dtype", ["int8", "int16", "int32", "uint32", "float32"])
def test_tiff_holds_wider_types_exactly(tmp_path, dtype):
    (frame,) = make_frames(1, (8, 9), dtype)
    if dtype == "uint32":  # pillow writes 32-bit signed TIFF: values below 2**31 only
        frame = make_frame(np.arange(72, dtype=np.uint32).reshape(8, 9) * 1000, 1)
    with harness(tmp_path) as h:
        h.process(frame)
    back = read(tmp_path / "out" / "000001.tiff")
    np.testing.assert_array_equal(back, h.published_images[0])


@pytest.mark.parametrize("ext", ["tiff", "png", "jpg"])
@pytest.mark.parametrize("mode", [2, 3, 4])
def test_rgb_frames_in_every_color_mode(tmp_path, ext, mode):
    # Smooth, and different per channel, so that a lossy format still shows the order.
    image = np.zeros((16, 24, 3), np.uint8)
    image[..., 0] = np.arange(24) * 10
    image[..., 1] = np.arange(16)[:, None] * 15
    image[..., 2] = 200
    with harness(tmp_path, "{uniqueId}." + ext) as h:
        h.process(make_frame(image, 1, color_mode=mode))
    back = read(tmp_path / "out" / f"1.{ext}")
    assert back.shape == (16, 24, 3)
    if ext == "jpg":  # lossy: close, not equal
        assert np.abs(back.astype(int) - image).mean() < 4
    else:
        np.testing.assert_array_equal(back, image)


def test_jpeg_mono_is_readable_and_close(tmp_path):
    image = np.tile(np.arange(64, dtype=np.uint8) * 4, (32, 1))
    with harness(tmp_path, "{uniqueId}.jpeg") as h:
        h.process(make_frame(image, 1))
    back = read(tmp_path / "out" / "1.jpeg")
    assert back.shape == image.shape and back.dtype == np.uint8
    assert np.abs(back.astype(int) - image).max() < 16


def test_compressed_frames_are_written_decompressed(tmp_path):
    frames = list(make_frames(2, (20, 30), "uint16", codec="bslz4"))
    with harness(tmp_path, "{frameId}.png") as h:
        h.run(frames)
    for i in (1, 2):
        np.testing.assert_array_equal(
            read(tmp_path / "out" / f"{i}.png"), h.published_images[i - 1]
        )


def test_name_fields_processor_id_and_object_id(tmp_path):
    frame = pva.NtNdArray({"customId": pva.INT})
    frame.set(make_frame(np.zeros((2, 2), np.uint8), 7))
    frame["customId"] = 99
    fmt = "{processorId}/{objectId:05d}_{uniqueId}_{frameId}.tiff"
    with harness(tmp_path, fmt, processor_id=3, object_id_field="customId") as h:
        h.process(frame)
    assert os.path.isfile(tmp_path / "out" / "3" / "00099_7_7.tiff")


def test_republishes_before_writing_and_stats(tmp_path):
    frames = list(make_frames(4, (10, 10), "uint8"))
    with harness(tmp_path, "{uniqueId}.png") as h:
        h.run(frames)
        assert h.returned == frames
    assert h.published == frames
    stats = h.stats
    sizes = sum(os.path.getsize(tmp_path / "out" / f"{i}.png") for i in range(1, 5))
    assert stats["nFilesWritten"] == 4 and stats["nErrors"] == 0
    assert stats["nBytesWritten"] == sizes
    assert stats["fileWriteRate"] > 0 and stats["byteWriteRate"] > 0
    assert stats["averageWriteTime"] > 0
    h.user_stats_object()  # every stat has a fitting PVA type
    h.reset_stats()
    assert h.stats["nFilesWritten"] == 0 and h.stats["fileWriteRate"] == 0.0


def test_no_partial_files_are_left(tmp_path):
    with harness(tmp_path) as h:
        h.run(make_frames(3, (8, 8)))
    assert not [n for n in os.listdir(tmp_path / "out") if n.endswith(".part")]


def test_unwritable_directory_fails_at_construction(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match=r"outputDirectory .*file/sub: cannot create it"):
        AdOutputFileProcessor({"outputDirectory": str(blocker / "sub")})
    with pytest.raises(ValueError, match="not a directory"):
        AdOutputFileProcessor({"outputDirectory": str(blocker)})
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(ValueError, match="no permission"):
            AdOutputFileProcessor({"outputDirectory": str(locked)})


def test_directory_gone_before_start_fails_in_start(tmp_path):
    proc = AdOutputFileProcessor({"outputDirectory": str(tmp_path / "d")})
    os.rmdir(tmp_path / "d")
    (tmp_path / "d").write_text("now a file")
    with pytest.raises(ValueError, match="not a directory"):
        ProcessorHarness(proc).start()


def test_bad_configuration_is_a_usage_error_from_the_command_line(tmp_path):
    cls = load_processor_class(None, "pvapy.hpc.adOutputFileProcessor.AdOutputFileProcessor")
    assert cls is AdOutputFileProcessor
    out = str(tmp_path)
    for config, message in [
        ({"outputDirectory": out, "outputFileNameFormat": "{id}.tiff"}, r"unknown field \{id\}"),
        ({"outputDirectory": out, "outputFileNameFormat": "{uniqueId}.bmp"}, "extension .bmp"),
        ({"outputDirectory": out, "outputFileNameFormat": "{uniqueId}"}, r"extension \(none\)"),
        ({"outputDirectory": out, "objectIdOffset": "x"}, "objectIdOffset 'x'"),
        ({"outputDirectory": out, "writeAttributes": "maybe"}, "writeAttributes 'maybe'"),
    ]:
        with pytest.raises(UsageError, match=message):
            create_processor(cls, config)
    # The seed passes objectIdOffset as a string.
    proc = create_processor(cls, {"outputDirectory": out, "objectIdOffset": "25"})
    assert proc.objectIdOffset == 25


def test_unsupported_pixel_types_name_the_alternative(tmp_path):
    with harness(tmp_path, "{uniqueId}.png") as h:
        with pytest.raises(ValueError, match="PNG cannot hold int16 pixels exactly; use TIFF"):
            h.process(make_frame(np.zeros((2, 2), np.int16), 1))
        with pytest.raises(ValueError, match="RGB uint16 .* use Hdf5AdImageWriter"):
            h.process(make_frame(np.zeros((2, 2, 3), np.uint16), 2))
        with pytest.raises(ValueError, match="neither a mono"):
            h.process(make_frame(np.zeros((2, 2, 2), np.uint8), 3))
    assert h.stats["nErrors"] == 3 and h.stats["nFilesWritten"] == 0
    with harness(tmp_path, "{uniqueId}.tiff") as h:
        with pytest.raises(ValueError, match=r"uint32 values above 2\*\*31-1"):
            h.process(make_frame(np.full((2, 2), 2**31, np.uint32), 1))
        with pytest.raises(ValueError, match="TIFF cannot hold float64"):
            h.process(make_frame(np.zeros((2, 2)), 2))


def test_errors_counted_and_stream_goes_on(tmp_path):
    frames = [
        make_frame(np.zeros((2, 2), np.uint8), 1),
        make_frame(np.zeros((2, 2), np.int64), 2),
        make_frame(np.zeros((2, 2), np.uint8), 3),
    ]
    with harness(tmp_path, "{uniqueId}.png") as h:
        h.run(frames, catch_errors=True)
    assert [f["uniqueId"] for f, _ in h.errors] == [2]
    assert h.stats["nFilesWritten"] == 2 and h.stats["nErrors"] == 1
    assert sorted(os.listdir(tmp_path / "out")) == ["1.png", "3.png"]


def test_configure_changes_directory_and_format_while_running(tmp_path):
    with harness(tmp_path) as h:
        h.process(make_frame(np.zeros((2, 2), np.uint8), 1))
        h.configure(
            {"outputDirectory": str(tmp_path / "b"), "outputFileNameFormat": "x{uniqueId}.png"}
        )
        h.process(make_frame(np.zeros((2, 2), np.uint8), 2))
        with pytest.raises(ValueError, match="extension"):
            h.configure({"outputFileNameFormat": "{uniqueId}.gif"})
        h.process(make_frame(np.zeros((2, 2), np.uint8), 3))
    assert os.listdir(tmp_path / "out") == ["000001.tiff"]
    assert sorted(os.listdir(tmp_path / "b")) == ["x2.png", "x3.png"]


def test_tiff_files_carry_id_time_and_attributes_in_areadetectors_tags(tmp_path):
    """The private tags of areaDetector's TIFF plugin, as its NTNDArray converter maps
    them: 65000 the dataTimeStamp as carried, uniqueId 65001, the timeStamp in the
    EPICS epoch 65002/65003, each attribute ``name:value`` from 65010 on (an empty
    value as ``name:``); writeAttributes false leaves them out."""
    stamp = 1_796_000_000.25  # POSIX seconds
    frame = make_frame(np.zeros((3, 4), np.uint16), 77, time_stamp=stamp,
                       data_time_stamp=stamp - 0.5,
                       attributes={"Temperature": 21.5, "Model": "cam", "Shutter": None})  # fmt: skip
    with harness(tmp_path) as h:
        h.run([frame])
    with Image.open(tmp_path / "out" / "000077.tiff") as im:
        tags = {k: v for k, v in im.tag_v2.items() if k >= 65000}
    assert tags == {
        65000: stamp - 0.5,
        65001: 77,
        65002: 1_796_000_000 - 631_152_000,
        65003: 250_000_000,
        65010: "ColorMode:0",
        65011: "Temperature:21.5",
        65012: "Model:cam",
        65013: "Shutter:",
    }
    config = {"outputDirectory": str(tmp_path), "outputFileNameFormat": "plain_{uniqueId}.tif",
              "writeAttributes": "false"}  # fmt: skip
    with ProcessorHarness(AdOutputFileProcessor, config) as h:
        h.run([frame])
    with Image.open(tmp_path / "plain_77.tif") as im:
        assert not [k for k in im.tag_v2 if k >= 65000]
