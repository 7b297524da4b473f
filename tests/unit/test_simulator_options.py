"""Option validation of ``pvapy-ad-sim-server``: user mistakes are one line, status 2."""

from __future__ import annotations

import numpy as np
import pytest

from pvhpc.cli import sim as sim_cli
from pvhpc.errors import UsageError
from pvhpc.options import sim
from pvhpc.simulator import MetadataPv, Simulator, SimulatorConfig, parse_metadata_pvs


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
    ):
        assert f"{option}," in out or f"{option} " in out, option


def test_defaults_follow_the_spec():
    args = sim.build_parser().parse_args([])
    config = sim.config_from_args(args)
    assert (config.channel_name, config.nx, config.ny) == ("pvapy:image", 256, 256)
    assert (config.datatype, config.color_mode, config.frame_rate) == ("uint8", 0, 20.0)
    assert (config.runtime, config.cache_size) == (300.0, 1000)


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
        ]
    )
    config = sim.config_from_args(args)
    assert (config.channel_name, config.datatype, config.color_mode) == ("x", "int16", 2)
    assert (config.frame_rate, config.runtime, config.n_frames, config.cache_size) == (5, 3, 4, 9)
    assert (config.start_delay, config.shutdown_delay, config.report_period) == (0, 1, 7)
    assert config.mmap_mode and config.metadata_pvs == "pva://m"
    assert (config.min_value, config.max_value) == (1, 2)


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
