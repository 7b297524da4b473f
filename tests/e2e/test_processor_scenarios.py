"""The seed's processor scenarios end to end: tiles, encryption, file writers.

Real simulator, real consumer processes, real files; assertions on pixels read back."""

from __future__ import annotations

import json
import os
import threading

import numpy as np
import pvaccess as pva
import pytest

from harness import (
    EXAMPLES,
    RECORDING_PROCESSOR,
    final_reports,
    pv_get,
    recorded,
    wait_accounted,
    wait_for,
)
from pvhpc.processors.ad_image import get_image

pytestmark = pytest.mark.e2e


def source_frames(tmp_path, shape=(48, 64), n=5, dtype=np.uint8, seed=3):
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, np.iinfo(dtype).max, size=(n, *shape), dtype=dtype)
    path = tmp_path / "frames.npy"
    np.save(path, frames)
    return frames, str(path)


def start_sim(procs, prefix, frames, fps, source, n):
    return procs.start(
        "sim",
        "-cn",
        f"{prefix}:image",
        "-fps",
        fps,
        "-rt",
        frames / fps,
        "-std",
        "4",
        "-shd",
        "120",
        "-if",
        source,
        "-nf",
        n,
        name="sim",
    )


def stage(procs, prefix, name, input_channel, *extra):
    return procs.start(
        "consumer",
        "-ic",
        input_channel,
        "-oc",
        f"{prefix}:{name}:*:output",
        "-sc",
        f"{prefix}:{name}:*:status",
        "-sqs",
        "100",
        "-rp",
        "0.5",
        "-rf",
        "json",
        *extra,
        name=name,
    )


def connected(procs, channel):
    wait_for(
        lambda: pv_get(channel)["receiverStats"]["nReceived"] >= 1,
        30,
        f"{channel} to connect",
        procs=procs,
    )


class ImageRecorder:
    """Copies of the images arriving on a channel, by id."""

    def __init__(self, channel):
        self.images: dict[int, np.ndarray] = {}
        self.lock = threading.Lock()
        self.channel = pva.Channel(channel)
        self.channel.monitor(self._on, "record[queueSize=200]field()")

    def _on(self, pv):
        oid = pv["uniqueId"]
        if oid > 0:  # not the channel's blank initial value
            with self.lock:
                self.images[oid] = np.array(get_image(pv))

    def close(self):
        self.channel.stopMonitor()


def test_splitting_images_into_tiles(procs, prefix, tmp_path):
    frames, source = source_frames(tmp_path)
    split = stage(
        procs,
        prefix,
        "split",
        f"{prefix}:image",
        "-pf",
        os.path.join(EXAMPLES, "splitAdImageProcessorExample.py"),
        "-pc",
        "SplitAdImageProcessor",
        "-pa",
        '{"nx": 32, "ny": 24}',
    )
    pa = json.dumps({"outputFile": str(tmp_path / "tiles-{processorId}.json")})
    tiles = stage(
        procs,
        prefix,
        "tile",
        f"{prefix}:split:1:output",
        "-nc",
        "4",
        "-du",
        "1",
        "-pf",
        RECORDING_PROCESSOR,
        "-pc",
        "RecordingProcessor",
        "-pa",
        pa,
    )
    tile1 = ImageRecorder(f"{prefix}:tile:1:output")
    sim = start_sim(procs, prefix, 30, 15, source, 5)
    connected(procs, f"{prefix}:split:1:status")
    for i in (1, 2, 3, 4):
        connected(procs, f"{prefix}:tile:{i}:status")
    sent = int(sim.wait_for_output(r"done, sent (\d+) frames", 60).group(1))
    wait_accounted([f"{prefix}:tile:{i}:status" for i in (1, 2, 3, 4)], 4 * sent, procs)
    tile1.close()
    assert tiles.stop() == 0 and split.stop() == 0
    # Four tiles per frame, dealt one to each consumer: each sees every frame id once.
    for i in (1, 2, 3, 4):
        assert recorded(str(tmp_path / "tiles-{processorId}.json"), i)["ids"] == list(
            range(1, sent + 1)
        )
    reports = final_reports(tiles)
    assert sum(r["processorStats"]["nProcessed"] for r in reports.values()) == 4 * sent
    # A tile's pixels are a 32x24 slice of its frame.
    assert tile1.images
    for oid, image in tile1.images.items():
        frame = frames[(oid - 1) % len(frames)]
        slices = [frame[y : y + 24, x : x + 32] for y in (0, 24) for x in (0, 32)]
        assert image.shape == (24, 32)
        assert any(np.array_equal(image, s) for s in slices), oid


def test_data_encryption_chain(procs, prefix, tmp_path):
    from Crypto.PublicKey import RSA

    key = tmp_path / "id_rsa"
    key.write_bytes(RSA.generate(2048).export_key("PEM"))
    frames, source = source_frames(tmp_path)
    stage(
        procs,
        prefix,
        "enc",
        f"{prefix}:image",
        "-pc",
        "pvapy.hpc.adImageDataEncryptor.AdImageDataEncryptor",
        "-pa",
        json.dumps({"privateKeyFilePath": str(key), "sign": 1}),
    )
    stage(
        procs,
        prefix,
        "dec",
        f"{prefix}:enc:1:output",
        "--oid-field",
        "objectId",
        "-pc",
        "pvapy.hpc.adImageDataDecryptor.AdImageDataDecryptor",
        "-pa",
        json.dumps({"privateKeyFilePath": str(key), "verify": 1}),
    )
    rot = stage(
        procs,
        prefix,
        "rot",
        f"{prefix}:dec:1:output",
        "-pf",
        os.path.join(EXAMPLES, "hpcAdImageProcessorExample.py"),
        "-pc",
        "HpcAdImageProcessor",
    )
    decrypted = ImageRecorder(f"{prefix}:dec:1:output")
    rotated = ImageRecorder(f"{prefix}:rot:1:output")
    sim = start_sim(procs, prefix, 20, 10, source, 5)
    for name in ("enc", "dec", "rot"):
        connected(procs, f"{prefix}:{name}:1:status")
    sent = int(sim.wait_for_output(r"done, sent (\d+) frames", 60).group(1))
    wait_accounted([f"{prefix}:rot:1:status"], sent, procs)
    wait_for(lambda: len(rotated.images) >= sent, 20, "rotated frames", procs=procs)
    decrypted.close()
    rotated.close()
    assert rot.stop() == 0
    for oid in range(1, sent + 1):
        original = frames[(oid - 1) % len(frames)]
        assert np.array_equal(decrypted.images[oid], original), oid
        assert np.array_equal(rotated.images[oid], np.rot90(original)), oid
    for name in ("enc", "dec"):
        st = pv_get(f"{prefix}:{name}:1:status")
        assert st["processorStats"]["nErrors"] == 0
        assert st["processorStats"]["nMissed"] == 0


@pytest.mark.parametrize("extension", ["tiff", "png"])
def test_files_written_equal_the_frames(procs, prefix, tmp_path, extension):
    frames, source = source_frames(tmp_path)
    out = tmp_path / "out"
    writer = stage(
        procs,
        prefix,
        "file",
        f"{prefix}:image",
        "-pc",
        "pvapy.hpc.adOutputFileProcessor.AdOutputFileProcessor",
        "-pa",
        json.dumps(
            {
                "outputDirectory": str(out),
                "outputFileNameFormat": f"bdp_{{uniqueId:06d}}.{{processorId}}.{extension}",
            }
        ),
    )
    sim = start_sim(procs, prefix, 20, 20, source, 5)
    connected(procs, f"{prefix}:file:1:status")
    sent = int(sim.wait_for_output(r"done, sent (\d+) frames", 60).group(1))
    wait_accounted([f"{prefix}:file:1:status"], sent, procs)
    assert writer.stop() == 0
    from PIL import Image

    names = sorted(os.listdir(out))
    assert names == [f"bdp_{i:06d}.1.{extension}" for i in range(1, sent + 1)]
    for i, name in enumerate(names, start=1):
        with Image.open(out / name) as im:
            assert np.array_equal(np.array(im), frames[(i - 1) % len(frames)]), name
    user = final_reports(writer)[1]["userStats"]
    assert user["nFilesWritten"] == sent


def test_hdf5_files_hold_every_frame_after_sigterm(procs, prefix, tmp_path):
    import signal

    import h5py

    frames, source = source_frames(tmp_path)
    out = tmp_path / "h5"
    writer = stage(
        procs,
        prefix,
        "h5",
        f"{prefix}:image",
        "-pc",
        "Hdf5AdImageWriter",
        "-pa",
        json.dumps(
            {
                "outputDirectory": str(out),
                "nImagesPerFile": 10,
                "outputFileNameFormat": "run_{outputFileId:03d}.h5",
            }
        ),
    )
    sim = start_sim(procs, prefix, 25, 25, source, 5)
    connected(procs, f"{prefix}:h5:1:status")
    sent = int(sim.wait_for_output(r"done, sent (\d+) frames", 60).group(1))
    assert sent == 25
    wait_accounted([f"{prefix}:h5:1:status"], sent, procs)
    writer.signal(signal.SIGTERM)
    assert writer.wait(30) == 0
    names = sorted(os.listdir(out))
    assert names == ["run_001.h5", "run_002.h5", "run_003.h5"]
    ids, images = [], []
    for name in names:
        with h5py.File(out / name, "r") as f:
            dset = f["/entry/data/data"] if "/entry/data/data" in f else None
            assert dset is not None, list(f.keys())
            images.extend(dset[()])
            paths: list[str] = []
            f.visit(paths.append)
            ids.extend(f[next(p for p in paths if p.endswith("uniqueId"))][()])
    assert [len(x) for x in np.split(np.array(ids), [10, 20])] == [10, 10, 5]
    assert list(ids) == list(range(1, 26))
    for oid, image in zip(ids, images):
        assert np.array_equal(image, frames[(oid - 1) % len(frames)])
