"""Mistakes with ``pvhpc record`` and with replaying a recording: one line, status 2."""

from __future__ import annotations

import time

import numpy as np
import pytest

from pvhpc.cli import record as record_cli
from pvhpc.cli import sim as sim_cli
from pvhpc.ntnda import make_frame
from pvhpc.options.record import build_parser, parse_size, record_config
from pvhpc.record import Recorder, RecordSettings, capture_frame
from pvhpc.record.session import progress_line


def one_line(capsys, status: int, *words: str) -> None:
    err = capsys.readouterr().err
    assert status == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for word in words:
        assert word in lines[0], lines[0]


@pytest.fixture
def recording(tmp_path) -> str:
    path = str(tmp_path / "run.h5")
    rec = Recorder(RecordSettings(path, channel="cam"))
    for k in range(3):
        rec.add_frame(capture_frame(make_frame(np.zeros((4, 4), np.uint8), k + 1), time.time()))
    rec.close()
    return path


def test_record_mistakes(capsys, tmp_path, recording):
    out = str(tmp_path / "out.h5")
    cases = [
        (["-ic", "x", "-o", str(tmp_path / "no/such/run.h5")], ["--output-file", "does not exist"]),
        (["-ic", "x", "-o", recording], ["--output-file", "never overwrites"]),
        (["-ic", "x", "-o", out, "--ring", "2"], ["--ring", "--control-channel"]),
        (["-ic", "x", "-o", out, "--trigger", "pva://s<1"], ["--trigger", "--ring"]),
        (["-ic", "x", "-o", out, "--ring", "2", "--trigger", "s<<1"], ["--trigger", "s<<1"]),
        (["-ic", "x", "-o", out, "--ring-memory", "1G"], ["--ring-memory", "--ring SECONDS"]),
        (["-ic", "x", "-o", out, "--ring", "2", "-rgm", "lots"], ["--ring-memory", "lots"]),
        (["-ic", "x", "-o", out, "-mc", "http://y"], ["--metadata-channels", "http"]),
        (["-ic", "x", "-o", out, "-ms", "lots"], ["--max-size", "lots"]),
        (["-ic", "x", "-o", out, "-mf", "-3"], ["--max-frames"]),
        (["-o", out], ["--input-channel"]),
    ]
    for argv, words in cases:
        one_line(capsys, record_cli.main(argv), *words)


def test_record_options_make_the_consumer_and_recorder_settings(tmp_path):
    args = build_parser().parse_args(
        [
            "-ic",
            "cam",
            "-o",
            str(tmp_path / "r.h5"),
            "-mc",
            "pva://a,b",
            "--ring",
            "3",
            "--trigger",
            "pva://shutter<0.5",
            "-cc",
            "_",
            "-fs",
            "2G",
            "-sqs",
            "7",
            "-rgm",
            "500M",
        ]  # fmt: skip
    )
    config, processor_args = record_config(args)
    assert config.control_channel == "pvapy:consumer:1:control"
    assert config.server_queue_size == 7 and config.kind == "consumer"
    # The trigger's channel is monitored too.
    assert [str(m) for m in config.metadata_channels] == ["a", "ca://b", "shutter"]
    assert processor_args["metadataChannels"] == "pva://a,ca://b,pva://shutter"
    assert processor_args["fileBytes"] == 2 * 10**9 and processor_args["ringSeconds"] == 3
    assert processor_args["ringBytes"] == 500 * 10**6
    assert parse_size("512") == 512 and parse_size("1.5k") == 1500 and parse_size("3MiB") == 3e6


def test_replay_mistakes(capsys, tmp_path, recording):
    npy = tmp_path / "frames.npy"
    np.save(npy, np.zeros((2, 4, 4), np.uint8))
    cases = [
        (["-if", str(npy), "--timing", "original"], ["--timing original", "no recorded timing"]),
        (["-if", str(npy), "--ids", "original"], ["--ids", "no recorded"]),
        (["-if", recording, "-hds", "entry/nothing"], ["--hdf5-dataset", "entry/nothing"]),
        (["-if", str(tmp_path / "missing.h5"), "--timing", "original"], ["--input-file"]),
        (["-if", recording, "-mpv", "pva://m"], ["--metadata-pv", "recording"]),
        (["-if", recording, "--timing", "later"], ["--timing", "later"]),
        (["-if", recording, "--speed", "0"], ["--speed"]),
    ]
    for argv, words in cases:
        one_line(capsys, sim_cli.main(argv), *words)


def test_record_progress_line_of_a_ring_at_its_memory_limit():
    snapshot = {
        "processorStats": {"nMissed": 0},
        "receiverStats": {"nRejected": 0},
        "userStats": {"ringFrames": 10, "ringSeconds": 0.18, "nDumps": 1, "nDumped": 10,
                      "nRingEvicted": 240},
    }  # fmt: skip
    line = progress_line(snapshot, 38400.0)
    assert line == (
        "ring: 10 frames (0.2 s) in memory, 1 dump(s), 10 frames dumped "
        "(memory limit: 240 frames left early), 0.0 MB/s, 0 missed"
    ), line
