"""Frames as an areaDetector IOC on PVXS sends them, served by p4p: compressed by
NDCodec (lz4, bslz4, blosc, jpeg; the uncompressed type in ``codec.parameters``),
pixel types other than uint16, RGB, and attributes of several types, one of them
without a value (its source not connected). Our consumer writes them with
Hdf5AdImageWriter (every frame decompressed pixel for pixel, or kept compressed;
every attribute one value per frame) and AdOutputFileProcessor (TIFF tags); what it
republishes, read back by p4p, is the frame as the source sent it.
"""

from __future__ import annotations

import io

import h5py
import hdf5plugin  # noqa: F401 - decodes the frames stored compressed
import numpy as np
import pytest
from p4p_source import P4pMonitor, P4pSource, image, p4p_context, unique_id
from PIL import Image

from harness import final_reports, pv_get, wait_accounted, wait_for
from pvhpc import codecs
from pvhpc.ntnda import scalar_type_code

pytestmark = pytest.mark.e2e

N_FRAMES = 30
RATE = 80.0


class AreaDetectorSource(P4pSource):
    """A :class:`P4pSource` whose frames carry what an areaDetector IOC adds."""

    def __init__(self, channel: str, shape, dtype, codec: str):
        self.codec = codec
        super().__init__(channel, shape, np.dtype(dtype))

    @staticmethod
    def attributes(unique_id: int) -> dict:
        return {
            "CameraModel": "p4p cam",
            "Temperature": 20.0 + unique_id / 4,
            "NumImagesCounter": unique_id,
            "Shutter": None,  # an EPICS_PV attribute whose PV is not connected
        }

    def pixels(self, unique_id: int) -> np.ndarray:
        """What the frame's pixels decode to (for jpeg, lossy, not the image sent)."""
        pixels = image(unique_id, self.shape, self.dtype)
        if self.codec != "jpeg":
            return pixels
        with Image.open(io.BytesIO(codecs.compress(pixels, "jpeg").tobytes())) as decoded:
            return np.asarray(decoded)

    def frame_value(self, unique_id: int, pixels: np.ndarray):
        value = self.nt.wrap(pixels, attrib=self.attributes(unique_id))
        packed = codecs.compress(pixels, self.codec)
        value["value"] = ("ubyteValue", packed.view(np.uint8))
        value["codec.name"] = self.codec
        value["codec.parameters"] = scalar_type_code(self.dtype)
        value["compressedSize"] = packed.nbytes
        value["uncompressedSize"] = pixels.nbytes
        return value


@pytest.mark.parametrize(
    "codec, shape, dtype, keep",
    [
        ("lz4", (12, 16), "uint16", False),
        ("bslz4", (12, 16), "float32", False),
        ("blosc", (12, 16, 3), "uint8", False),  # RGB1
        ("bslz4", (12, 16), "uint16", True),  # stored as it came (keepCompression)
        ("jpeg", (12, 16, 3), "uint8", True),  # no HDF5 filter: stored decoded
    ],
)
def test_compressed_frames_with_attributes_are_written_and_republished_intact(
    procs, prefix, tmp_path, codec, shape, dtype, keep
):
    src = AreaDetectorSource(f"{prefix}:image", shape, dtype, codec)
    ctx = p4p_context()
    try:
        c = procs.start(
            "consumer",
            "-ic",
            src.channel,
            "-oc",
            f"{prefix}:c:*:output",
            "-sc",
            f"{prefix}:c:*:status",
            "-sqs",
            "200",
            "-rf",
            "json",
            "-pc",
            "Hdf5AdImageWriter",
            "-pa",
            f'{{"outputDirectory": "{tmp_path}", "outputFileNameFormat": "run.h5", '
            f'"nImagesPerFile": 0, "keepCompression": {str(keep).lower()}}}',
            name="c",
        )
        status = f"{prefix}:c:1:status"
        out = P4pMonitor(ctx, f"{prefix}:c:1:output", raw=True)
        out.wait_count(1, 30, procs)  # the consumer got the source's current value
        ids = src.publish(range(1, N_FRAMES + 1), RATE)
        wait_accounted([status], N_FRAMES, procs)
        wait_for(lambda: unique_id(out.snapshot()[-1]) == N_FRAMES, 20, "the last frame out")
        assert c.stop() == 0
        report = final_reports(c)[1]
        assert report["processorStats"]["nProcessed"] == N_FRAMES
        assert report["processorStats"]["nErrors"] == 0
        assert report["userStats"]["nFramesWritten"] == N_FRAMES

        with h5py.File(tmp_path / "run.h5", "r") as f:
            data = f["/entry/data/data"]
            assert data.dtype == np.dtype(dtype) and data.shape == (N_FRAMES, *shape)
            assert data.attrs.get("codec", "") == (codec if keep and codec != "jpeg" else "")
            assert f["/entry/data/uniqueId"][()].tolist() == ids
            for k, uid in enumerate(ids):
                assert np.array_equal(data[k], src.pixels(uid)), uid
            nd = f["/entry/instrument/NDAttributes"]
            assert list(nd["CameraModel"].asstr()[()]) == ["p4p cam"] * N_FRAMES
            np.testing.assert_array_equal(nd["Temperature"][()], [20.0 + i / 4 for i in ids])
            assert nd["NumImagesCounter"][()].tolist() == ids
            assert nd["ColorMode"][()].tolist() == [2 if len(shape) == 3 else 0] * N_FRAMES
            assert np.isnan(nd["Shutter"][()]).all() and len(nd["Shutter"]) == N_FRAMES

        # Republished as received: p4p reads the same compressed bytes and fields.
        frames = {unique_id(v): v for v in out.snapshot() if unique_id(v) > 0}
        assert sorted(frames) == ids
        for uid, raw in frames.items():
            sent = src.wrap(uid)
            assert raw["codec.name"] == codec
            assert raw["codec.parameters"] == scalar_type_code(dtype)
            assert np.array_equal(raw["value"], sent["value"]), uid
            assert raw["uncompressedSize"] == sent["uncompressedSize"]
            attrs = {a["name"]: a["value"] for a in raw["attribute"]}
            assert attrs["Shutter"] is None and attrs["NumImagesCounter"] == uid
            assert attrs["CameraModel"] == "p4p cam"
        out.close()
    finally:
        ctx.close()
        src.close()


def test_tiff_files_of_p4p_frames_carry_the_attributes_in_areadetectors_tags(
    procs, prefix, tmp_path
):
    """The same source into AdOutputFileProcessor: each TIFF holds the decoded pixels
    and the frame's uniqueId and attributes in NDFileTIFF's tags, as p4p sent them."""
    src = AreaDetectorSource(f"{prefix}:image", (12, 16), "uint16", "lz4")
    try:
        c = procs.start(
            "consumer", "-ic", src.channel, "-sc", f"{prefix}:c:*:status", "-sqs", "200",
            "-rp", "0.5", "-rf", "json", "-pc", "AdOutputFileProcessor",
            "-pa", f'{{"outputDirectory": "{tmp_path}", "outputFileNameFormat": "f_{{uniqueId}}.tiff"}}',
            name="c",
        )  # fmt: skip
        status = f"{prefix}:c:1:status"
        wait_for(lambda: pv_get(status)["receiverStats"]["nReceived"] >= 1, 30, "the consumer",
                 procs=procs)  # fmt: skip
        ids = src.publish(range(1, 11), RATE)
        wait_accounted([status], len(ids), procs)
        assert c.stop() == 0
        assert final_reports(c)[1]["userStats"]["nFilesWritten"] == len(ids)
    finally:
        src.close()
    for uid in ids:
        with Image.open(tmp_path / f"f_{uid}.tiff") as tiff:
            assert np.array_equal(np.asarray(tiff), src.pixels(uid)), uid
            tags = {k: v for k, v in tiff.tag_v2.items() if k >= 65001}
        assert tags[65001] == uid
        attrs = dict(v.split(":", 1) for k, v in tags.items() if k >= 65010)
        assert attrs["NumImagesCounter"] == str(uid) and attrs["CameraModel"] == "p4p cam"
        assert attrs["Shutter"] == "" and float(attrs["Temperature"]) == 20.0 + uid / 4
