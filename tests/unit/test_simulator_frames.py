"""Frames the simulator prepares: every datatype and colour mode, files, compression."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from pvhpc.processors.ad_image import get_color_mode, get_image
from pvhpc.simulator import (
    COLOR_MODES,
    DATATYPES,
    Simulator,
    SimulatorConfig,
    build_frame,
    frame_shape,
    generate_frames,
    load_frames,
    value_range,
)

NX, NY = 5, 3


def expected_layout(image: np.ndarray, color_mode: int) -> np.ndarray:
    """The array in the memory order NTNDArray carries for the colour mode."""
    if color_mode == 3:
        return image.transpose(0, 2, 1)
    if color_mode == 4:
        return image.transpose(2, 0, 1)
    return image


EXPECTED_DIMS = {0: [NX, NY], 2: [3, NX, NY], 3: [NX, 3, NY], 4: [NX, NY, 3]}


@pytest.mark.parametrize("color_mode", sorted(COLOR_MODES))
@pytest.mark.parametrize("datatype", list(DATATYPES))
def test_build_frame_for_every_datatype_and_color_mode(datatype, color_mode):
    image = generate_frames(1, NX, NY, datatype, color_mode, seed=7)[0]
    assert image.shape == frame_shape(NX, NY, color_mode)
    frame = build_frame(image, color_mode)

    value = frame["value"]
    value = value[0] if isinstance(value, tuple) else value
    assert list(value) == [DATATYPES[datatype]]
    carried = np.asarray(value[DATATYPES[datatype]])
    assert carried.dtype == np.dtype(datatype)
    np.testing.assert_array_equal(carried, expected_layout(image, color_mode).reshape(-1))

    assert [d["size"] for d in frame["dimension"]] == EXPECTED_DIMS[color_mode]
    assert get_color_mode(frame) == color_mode
    names = [a["name"] for a in frame["attribute"]]
    assert names.count("ColorMode") == 1
    assert frame["uniqueId"] == 0
    assert frame["codec"]["name"] == ""
    assert frame["compressedSize"] == frame["uncompressedSize"] == image.nbytes
    np.testing.assert_array_equal(get_image(frame), image)


@pytest.mark.parametrize("codec", ["lz4", "bslz4", "blosc"])
@pytest.mark.parametrize("datatype", ["uint8", "int16", "float32", "uint64"])
def test_compressed_frames_decode_to_the_original(codec, datatype):
    module = {"lz4": "lz4", "bslz4": "bitshuffle", "blosc": "blosc"}[codec]
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} not installed")
    image = generate_frames(1, 128, 128, datatype, 0, 0, 20, seed=1)[0]
    frame = build_frame(image, 0, codec)
    assert frame["codec"]["name"] == codec
    assert frame["uncompressedSize"] == image.nbytes
    assert frame["compressedSize"] == np.asarray(frame["value"][0]["ubyteValue"]).size
    np.testing.assert_array_equal(get_image(frame), image)
    constant = np.full_like(image, 5)
    assert build_frame(constant, 0, codec)["compressedSize"] < constant.nbytes / 10


@pytest.mark.parametrize("datatype", list(DATATYPES))
def test_random_values_stay_in_range(datatype):
    data = generate_frames(4, 16, 8, datatype, 0, 3, 9, seed=2)
    assert data.shape == (4, 8, 16) and data.dtype == np.dtype(datatype)
    assert data.min() >= 3 and data.max() <= 9
    assert len(np.unique(data)) > 1


def test_default_ranges():
    assert value_range("uint8", None, None) == (0, 255)
    assert value_range("int16", None, None) == (-32768, 32767)
    assert value_range("uint64", None, None) == (0, 2**64 - 1)
    assert value_range("float32", None, None) == (0.0, 1.0)
    full = generate_frames(1, 256, 256, "uint8", seed=3)
    assert full.min() == 0 and full.max() == 255
    floats = generate_frames(1, 64, 64, "float64", seed=3)
    assert 0.0 <= floats.min() and floats.max() < 1.0


def test_load_npy_single_frame_stack_and_limit(tmp_path):
    stack = np.arange(4 * 3 * 5, dtype=np.uint16).reshape(4, 3, 5)
    np.save(tmp_path / "stack.npy", stack)
    np.save(tmp_path / "one.npy", stack[0])
    np.testing.assert_array_equal(load_frames(str(tmp_path / "stack.npy")), stack)
    np.testing.assert_array_equal(load_frames(str(tmp_path / "one.npy")), stack[:1])
    limited = load_frames(str(tmp_path / "stack.npy"), n_frames=2, mmap=True)
    assert isinstance(limited, np.ndarray) and not isinstance(limited, np.memmap)
    np.testing.assert_array_equal(limited, stack[:2])


def test_load_directory_in_name_order(tmp_path):
    a = np.full((2, 3, 5), 1, np.int32)
    b = np.full((3, 5), 2, np.int32)
    c = np.full((1, 3, 5), 3, np.int32)
    np.save(tmp_path / "b.npy", b)
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "c.npy", c)
    (tmp_path / "ignored.txt").write_text("x")
    data = load_frames(input_directory=str(tmp_path))
    assert [int(f[0, 0]) for f in data] == [1, 1, 2, 3]
    assert len(load_frames(input_directory=str(tmp_path), n_frames=3)) == 3


def test_load_hdf5(tmp_path):
    h5py = pytest.importorskip("h5py")
    frames = np.random.default_rng(0).integers(0, 100, (3, 4, 6, 3), dtype=np.uint8)
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f.create_dataset("entry/data", data=frames)
    np.testing.assert_array_equal(load_frames(str(tmp_path / "f.h5"), color_mode=2), frames)
    np.testing.assert_array_equal(
        load_frames(str(tmp_path / "f.h5"), color_mode=2, hdf5_dataset="entry/data", n_frames=1),
        frames[:1],
    )


def test_simulator_takes_size_and_type_from_the_input(tmp_path):
    frames = np.random.default_rng(1).random((3, 7, 9)).astype(np.float32)
    np.save(tmp_path / "f.npy", frames)
    sim = Simulator(SimulatorConfig(input_file=str(tmp_path / "f.npy"), nx=100, datatype="uint8"))
    assert (sim.config.nx, sim.config.ny, sim.config.datatype) == (9, 7, "float32")
    assert len(sim.frames) == 3
    for k in range(3):
        np.testing.assert_array_equal(get_image(sim.frames[k]), frames[k])


def test_frame_counts_cache_and_memory_budget(tmp_path):
    assert len(Simulator(SimulatorConfig(nx=8, ny=8, n_frames=5)).frames) == 5
    assert len(Simulator(SimulatorConfig(nx=8, ny=8, cache_size=7)).frames) == 7
    assert len(Simulator(SimulatorConfig(nx=8, ny=8, n_frames=20, cache_size=4)).frames) == 4
    np.save(tmp_path / "f.npy", np.zeros((10, 2, 2), np.uint8))
    config = SimulatorConfig(input_file=str(tmp_path / "f.npy"), cache_size=6)
    assert len(Simulator(config).frames) == 6
    # without -nf, random frames stay within the memory budget
    from pvhpc.simulator import frames as simulator

    budget = simulator.DEFAULT_MEMORY_BUDGET
    simulator.DEFAULT_MEMORY_BUDGET = 3 * 64 * 64
    try:
        assert len(Simulator(SimulatorConfig(nx=64, ny=64)).frames) == 3
    finally:
        simulator.DEFAULT_MEMORY_BUDGET = budget


def test_frames_are_distinct():
    sim = Simulator(SimulatorConfig(nx=16, ny=16, n_frames=3))
    images = [get_image(f) for f in sim.frames]
    assert not np.array_equal(images[0], images[1])
    assert not np.array_equal(images[1], images[2])
