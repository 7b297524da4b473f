"""Option validation of ``pvapy-ad-sim-server``: user mistakes are one line, status 2."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pvhpc.cli import sim as sim_cli
from pvhpc.errors import UsageError
from pvhpc.options import sim
from pvhpc.simulator import (
    MetadataPv,
    Simulator,
    SimulatorConfig,
    SimulatorStats,
    parse_metadata_pvs,
)
from pvhpc.simulator.pacing import gap_stats


def run(capsys, *argv: str) -> tuple[int, str]:
    status = sim_cli.main(list(argv))
    return status, capsys.readouterr().err


def assert_one_line_error(err: str, *words: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for word in words:
        assert word in lines[0], lines[0]


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["-dt", "uint12"], ["--datatype", "uint12"]),
        (["-cm", "1"], ["--color-mode", "'1'"]),
        (["-cm", "rgb"], ["--color-mode", "'rgb'"]),
        (["-nx", "0"], ["-nx", "'0'"]),
        (["-ny", "-5"], ["-ny", "'-5'"]),
        (["-fps", "0"], ["--frame-rate", "'0'"]),
        (["-fps", "fast"], ["--frame-rate", "'fast'"]),
        (["-cs", "0"], ["--cache-size", "'0'"]),
        (["-nf", "-1"], ["--n-frames", "'-1'"]),
        (["-std", "-1"], ["--start-delay", "'-1'"]),
        (["-rp", "x"], ["--report-period", "'x'"]),
        (["-cd", "zip"], ["--compression-codec", "zip"]),
        (["--no-such-option"], ["--no-such-option"]),
        (["-if", "/nonexistent/frames.npy"], ["--input-file", "/nonexistent/frames.npy"]),
        (["-id", "/nonexistent/dir"], ["--input-directory", "/nonexistent/dir"]),
        (["-dt", "uint8", "-mn", "-1"], ["--min-value", "-1"]),
        (["-dt", "uint8", "-mx", "300"], ["--max-value", "300"]),
        (["-mn", "10", "-mx", "5"], ["--min-value", "10"]),
        (["-mpv", "pva://a,,b"], ["--metadata-pv"]),
        (["-mpv", "http://x"], ["--metadata-pv", "http"]),
        (["-mpv", "pva://x,ca://x"], ["--metadata-pv", "'x'"]),
        (["-cn", "img", "-mpv", "pva://img"], ["--metadata-pv", "'img'"]),
        (["-hds", "data"], ["--hdf5-dataset"]),
        (["-ll", "chatty"], ["--log-level", "chatty"]),
        (["-pm", "smooth"], ["--pacing", "'smooth'"]),
        (["-rf", "xml"], ["--report-format", "'xml'"]),
    ],
)
def test_user_mistakes_exit_2_with_one_line(capsys, argv, words):
    status, err = run(capsys, *argv)
    assert status == 2
    assert_one_line_error(err, *words)


def test_input_file_and_directory_exclude_each_other(capsys, tmp_path):
    path = tmp_path / "f.npy"
    np.save(path, np.zeros((2, 4, 4), np.uint8))
    status, err = run(capsys, "-if", str(path), "-id", str(tmp_path))
    assert status == 2
    assert_one_line_error(err, "--input-directory")


def test_unreadable_and_misshapen_input_files(capsys, tmp_path):
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"not numpy")
    status, err = run(capsys, "-if", str(bad))
    assert status == 2
    assert_one_line_error(err, "--input-file", str(bad))

    flat = tmp_path / "flat.npy"
    np.save(flat, np.zeros(10, np.uint8))
    status, err = run(capsys, "-if", str(flat))
    assert status == 2
    assert_one_line_error(err, "--input-file", "(10,)")

    mono = tmp_path / "mono.npy"
    np.save(mono, np.zeros((2, 4, 4), np.uint8))
    status, err = run(capsys, "-if", str(mono), "-cm", "2")
    assert status == 2
    assert_one_line_error(err, "--input-file", "(ny, nx, 3)")

    text = tmp_path / "frames.txt"
    text.write_text("1 2 3")
    status, err = run(capsys, "-if", str(text))
    assert status == 2
    assert_one_line_error(err, "--input-file", "frames.txt")


def test_directory_files_must_agree(capsys, tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((2, 4, 4), np.uint8))
    np.save(tmp_path / "b.npy", np.zeros((2, 4, 5), np.uint8))
    status, err = run(capsys, "-id", str(tmp_path))
    assert status == 2
    assert_one_line_error(err, "--input-directory", "b.npy")
    status, err = run(capsys, "-id", str(tmp_path / "a.npy"))
    assert status == 2
    assert_one_line_error(err, "--input-directory", "not a directory")


def test_empty_directory(capsys, tmp_path):
    status, err = run(capsys, "-id", str(tmp_path))
    assert status == 2
    assert_one_line_error(err, "--input-directory", "no .npy")


def test_hdf5_dataset_must_exist(capsys, tmp_path):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "frames.h5"
    with h5py.File(path, "w") as f:
        f["a"] = np.zeros((2, 4, 4), np.uint8)
        f["b"] = np.zeros((2, 4, 4), np.uint8)
    status, err = run(capsys, "-if", str(path))
    assert status == 2
    assert_one_line_error(err, "--hdf5-dataset", "2 datasets")
    status, err = run(capsys, "-if", str(path), "-hds", "c")
    assert status == 2
    assert_one_line_error(err, "--hdf5-dataset", "'c'")


def test_version_and_help(capsys):
    assert sim_cli.main(["--version"]) == 0
    assert "pvhpc" in capsys.readouterr().out
    assert sim_cli.main(["-h"]) == 0
    out = capsys.readouterr().out
    for option in (
        "-cn",
        "-nx",
        "-ny",
        "-dt",
        "-cm",
        "-mn",
        "-mx",
        "-fps",
        "-rt",
        "-nf",
        "-cs",
        "-if",
        "-hds",
        "-id",
        "-mm",
        "-mpv",
        "-std",
        "-shd",
        "-rp",
        "-cd",
        "-dc",
        "-pm",
        "-rf",
    ):
        assert f"{option}," in out or f"{option} " in out, option
    assert "even" in out and "burst" in out and "json" in out


def test_defaults_follow_the_spec():
    args = sim.build_parser().parse_args([])
    config = sim.config_from_args(args)
    assert (config.channel_name, config.nx, config.ny) == ("pvapy:image", 256, 256)
    assert (config.datatype, config.color_mode, config.frame_rate) == ("uint8", 0, 20.0)
    assert (config.runtime, config.cache_size) == (300.0, 1000)
    # SPEC 3.4: frames go out evenly unless bursts are asked for.
    assert (config.pacing, config.report_format) == ("even", "text")


def test_long_option_names():
    args = sim.build_parser().parse_args(
        [
            "--channel-name",
            "x",
            "--datatype",
            "int16",
            "--color-mode",
            "2",
            "--frame-rate",
            "5",
            "--runtime",
            "3",
            "--n-frames",
            "4",
            "--cache-size",
            "9",
            "--start-delay",
            "0",
            "--shutdown-delay",
            "1",
            "--report-period",
            "7",
            "--disable-curses",
            "--mmap-mode",
            "--min-value",
            "1",
            "--max-value",
            "2",
            "--metadata-pv",
            "pva://m",
            "--pacing",
            "burst",
            "--report-format",
            "json",
        ]
    )
    config = sim.config_from_args(args)
    assert (config.channel_name, config.datatype, config.color_mode) == ("x", "int16", 2)
    assert (config.frame_rate, config.runtime, config.n_frames, config.cache_size) == (5, 3, 4, 9)
    assert (config.start_delay, config.shutdown_delay, config.report_period) == (0, 1, 7)
    assert config.mmap_mode and config.metadata_pvs == "pva://m"
    assert (config.min_value, config.max_value) == (1, 2)
    assert (config.pacing, config.report_format) == ("burst", "json")


def test_metadata_pv_parsing():
    assert parse_metadata_pvs("pva://x,ca://y,z") == [
        MetadataPv("x", "pva"),
        MetadataPv("y", "ca"),
        MetadataPv("z", "ca"),
    ]
    assert parse_metadata_pvs(" PVA://a:b , c ") == [
        MetadataPv("a:b", "pva"),
        MetadataPv("c", "ca"),
    ]
    assert parse_metadata_pvs(None) == []
    with pytest.raises(UsageError, match="twice"):
        parse_metadata_pvs("x,x")


def test_config_errors_raise_usage_error_from_python():
    with pytest.raises(UsageError, match="--datatype"):
        Simulator(SimulatorConfig(datatype="complex64"))
    with pytest.raises(UsageError, match="--color-mode"):
        Simulator(SimulatorConfig(color_mode=1))
    with pytest.raises(UsageError, match="--frame-rate"):
        Simulator(SimulatorConfig(frame_rate=float("inf")))
    with pytest.raises(UsageError, match="--pacing"):
        Simulator(SimulatorConfig(pacing="bursty"))
    with pytest.raises(UsageError, match="--report-format"):
        Simulator(SimulatorConfig(report_format="yaml"))
    with pytest.raises(UsageError, match="jpeg: JPEG holds uint8 pixels only, not uint16"):
        Simulator(SimulatorConfig(datatype="uint16", compression_codec="jpeg"))
    with pytest.raises(UsageError, match="jpeg: JPEG holds mono or RGB1 images, not color mode 3"):
        Simulator(SimulatorConfig(color_mode=3, compression_codec="jpeg"))


def test_report_line_and_object_carry_the_same_figures():
    stats = SimulatorStats("cam:image", 1000.0, "burst", n_sent=2000, elapsed=2.0, cpu=0.5,
                           max_lag=0.003, gap_p50=0.0001, gap_p99=0.0012)  # fmt: skip
    line = stats.line(final=True)
    # The words the readers of the text output parse (tests/harness.py, pvhpc run).
    assert line.startswith("cam:image: done, sent 2000 frames in 2.000 s, 1000.00 fps")
    assert "(requested 1000, pacing burst)" in line
    assert "gap p50 0.100 ms p99 1.200 ms" in line
    assert "cpu 25%" in line and "max lag 3.00 ms" in line
    record = json.loads(json.dumps(stats.as_dict(final=True)))
    assert record == {
        "event": "report", "channel": "cam:image", "mode": "burst", "nSent": 2000,
        "elapsed": 2.0, "rate": 1000.0, "requestedRate": 1000.0, "cpu": 25.0,
        "maxLag": 0.003, "gapP50": 0.0001, "gapP99": 0.0012, "lateP50": None,
        "lateP99": None, "nRestarts": 0, "final": True,
    }  # fmt: skip
    before = SimulatorStats("cam:image", 10.0)
    assert before.pacing == "even" and "gap" not in before.line()
    assert before.as_dict()["gapP50"] is None and before.as_dict()["final"] is False


def test_gap_stats_use_the_recent_publish_times():
    times = np.zeros(8)
    # Frames 1..10 published at k * 10 ms, except frame 10, 50 ms after frame 9;
    # the buffer holds the last 8 (frame k at k % 8).
    for k in range(1, 11):
        times[k % 8] = 0.01 * k + (0.04 if k == 10 else 0.0)
    p50, p99 = gap_stats(times, 0, 10)
    assert p50 == pytest.approx(0.01) and 0.04 < p99 <= 0.05
    assert gap_stats(times, 8, 10)[0] == pytest.approx(0.03)  # the gaps before 9 and 10
    assert gap_stats(times, 0, 1) == (None, None)
    assert gap_stats(times, 0, 0) == (None, None)
