"""Frames the simulator serves: random ones from numpy's generator, or frames read from
``.npy`` files, a directory of them, or an HDF5 dataset; each built once, before the
first one goes out, as the NTNDArray the consumers' image helpers decode."""

from __future__ import annotations

import glob
import logging
import os
import time
from typing import Any

import numpy as np
import pvaccess as pva

from ..errors import UsageError
from ..ntnda import make_frame
from .config import COLOR_MODES, DATATYPES, SimulatorConfig

__all__ = [
    "DEFAULT_MEMORY_BUDGET",
    "HDF5_SUFFIXES",
    "build_frame",
    "frame_shape",
    "generate_frames",
    "load_frames",
    "prepare_frames",
    "value_range",
]

logger = logging.getLogger("pvhpc.simulator")

HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".nxs")
# Without -nf, random frames are prepared up to the cache size but never more
# than this many bytes, so that a large -nx/-ny cannot exhaust memory by default.
DEFAULT_MEMORY_BUDGET = 1 << 30


def frame_shape(nx: int, ny: int, color_mode: int) -> tuple[int, ...]:
    """The numpy shape of one frame as the simulator holds it: ``(ny, nx)`` for mono,
    ``(ny, nx, 3)`` for every RGB mode (laid out for RGB2/RGB3 when the NTNDArray is
    built)."""
    return (ny, nx) if color_mode == 0 else (ny, nx, 3)


def value_range(datatype: str, low: float | None, high: float | None) -> tuple[Any, Any]:
    """The [low, high] range of random pixel values; UsageError if it cannot hold.

    Integers default to the full range of the type (both ends included); floats to
    [0, 1).
    """
    dtype = np.dtype(datatype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        lo = info.min if low is None else low
        hi = info.max if high is None else high
        for option, value in (("--min-value", lo), ("--max-value", hi)):
            if value != int(value) or not info.min <= value <= info.max:
                raise UsageError(
                    f"{option}: {value:g} is not an integer within {datatype}'s range "
                    f"[{info.min}, {info.max}]"
                )
        lo, hi = int(lo), int(hi)
    else:
        lo = 0.0 if low is None else float(low)
        hi = 1.0 if high is None else float(high)
    if lo > hi:
        raise UsageError(f"--min-value: {lo} is greater than --max-value {hi}")
    return lo, hi


def generate_frames(
    n: int,
    nx: int,
    ny: int,
    datatype: str,
    color_mode: int = 0,
    low: float | None = None,
    high: float | None = None,
    seed: int | None = None,
) -> np.ndarray:
    """``n`` random frames as one array of shape ``(n, *frame_shape(...))``."""
    lo, hi = value_range(datatype, low, high)
    rng = np.random.default_rng(seed)
    shape = (n, *frame_shape(nx, ny, color_mode))
    dtype = np.dtype(datatype)
    if dtype.kind in "iu":
        return rng.integers(lo, hi, size=shape, dtype=dtype, endpoint=True)
    data = rng.random(size=shape, dtype=np.float64 if dtype == np.float64 else np.float32)
    if (lo, hi) != (0.0, 1.0):
        data *= hi - lo
        data += lo
    return data.astype(dtype, copy=False)


def _as_frames(array: Any, color_mode: int, source: str) -> Any:
    """View ``array`` as a stack of frames: one frame gains a leading axis of 1."""
    frame_ndim = 2 if color_mode == 0 else 3
    if array.ndim == frame_ndim:
        array = array[np.newaxis]
    if array.ndim != frame_ndim + 1:
        raise UsageError(
            f"--input-file: {source} holds an array of shape {tuple(array.shape)}; expected "
            f"{'(ny, nx) or (frames, ny, nx)' if color_mode == 0 else '(ny, nx, 3) or (frames, ny, nx, 3)'} "
            f"for color mode {color_mode}"
        )
    if color_mode != 0 and array.shape[-1] != 3:
        raise UsageError(
            f"--input-file: {source} has shape {tuple(array.shape)}, but color mode "
            f"{color_mode} ({COLOR_MODES[color_mode]}) needs frames shaped (ny, nx, 3)"
        )
    if array.dtype.name not in DATATYPES:
        raise UsageError(
            f"--input-file: {source} holds {array.dtype} data, which NTNDArray cannot carry"
        )
    if array.shape[0] == 0:
        raise UsageError(f"--input-file: {source} holds no frames")
    return array


def _load_npy(path: str, mmap: bool, option: str) -> Any:
    # np.load takes anything without the NumPy header for a pickle, and then says so.
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
    except OSError as exc:
        raise UsageError(f"{option}: cannot read {path!r}: {exc.strerror}") from None
    if magic != b"\x93NUMPY":
        raise UsageError(
            f"{option}: {path!r} is not a .npy file (no NumPy header); write frames with numpy.save"
        )
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc):
            raise UsageError(
                f"{option}: {path!r} holds Python objects, not an array of numbers"
            ) from None
        raise UsageError(f"{option}: cannot read {path!r} as a .npy file: {exc}") from None
    except OSError as exc:
        raise UsageError(f"{option}: cannot read {path!r} as a .npy file: {exc}") from None


def _load_hdf5(path: str, dataset: str | None) -> Any:
    try:
        import h5py
    except ImportError:
        raise UsageError(
            f"--input-file: {path!r} is HDF5, which needs h5py (pip install 'pvhpc[files]')"
        ) from None
    try:
        h5 = h5py.File(path, "r")
    except OSError as exc:
        raise UsageError(f"--input-file: cannot open {path!r} as HDF5: {exc}") from None
    if dataset is None:
        names: list[str] = []
        h5.visititems(
            lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None
        )
        if len(names) != 1:
            raise UsageError(
                f"--hdf5-dataset: {path!r} holds {len(names)} datasets ({', '.join(names[:5])}); "
                "name the one to serve"
            )
        dataset = names[0]
    node = h5.get(dataset)
    if not isinstance(node, h5py.Dataset):
        raise UsageError(f"--hdf5-dataset: {path!r} has no dataset {dataset!r}")
    return node


def load_frames(
    input_file: str | None = None,
    input_directory: str | None = None,
    color_mode: int = 0,
    n_frames: int = 0,
    hdf5_dataset: str | None = None,
    mmap: bool = False,
) -> np.ndarray:
    """Read frames from a ``.npy``/HDF5 file or every ``.npy`` file of a directory.

    Returns an in-memory array ``(frames, *frame_shape)`` holding at most
    ``n_frames`` frames (all if 0). Directory files are taken in name order and
    must agree in frame shape and type. Raises UsageError naming the option and
    the file for anything that is missing or does not fit.
    """
    if input_directory is not None:
        if not os.path.isdir(input_directory):
            raise UsageError(f"--input-directory: {input_directory!r} is not a directory")
        paths = sorted(glob.glob(os.path.join(glob.escape(input_directory), "*.npy")))
        if not paths:
            raise UsageError(f"--input-directory: {input_directory!r} contains no .npy files")
        stacks = []
        total = 0
        for path in paths:
            stack = _as_frames(_load_npy(path, mmap, "--input-directory"), color_mode, path)
            if stacks and (stack.shape[1:], stack.dtype) != (stacks[0].shape[1:], stacks[0].dtype):
                raise UsageError(
                    f"--input-directory: {path!r} holds {stack.dtype} frames of shape "
                    f"{tuple(stack.shape[1:])}, unlike {paths[0]!r} "
                    f"({stacks[0].dtype}, {tuple(stacks[0].shape[1:])})"
                )
            stacks.append(stack)
            total += stack.shape[0]
            if n_frames and total >= n_frames:
                break
        data = np.concatenate(stacks)
        return data[:n_frames] if n_frames else data
    assert input_file is not None
    if not os.path.isfile(input_file):
        raise UsageError(f"--input-file: {input_file!r} does not exist or is not a file")
    if input_file.lower().endswith(HDF5_SUFFIXES):
        stack = _as_frames(_load_hdf5(input_file, hdf5_dataset), color_mode, input_file)
    elif input_file.lower().endswith(".npy"):
        if hdf5_dataset is not None:
            raise UsageError(f"--hdf5-dataset: {input_file!r} is not an HDF5 file")
        stack = _as_frames(_load_npy(input_file, mmap, "--input-file"), color_mode, input_file)
    else:
        raise UsageError(
            f"--input-file: {input_file!r} is neither .npy nor HDF5 ({', '.join(HDF5_SUFFIXES)})"
        )
    return np.asarray(stack[:n_frames] if n_frames else stack[:])


def build_frame(data: np.ndarray, color_mode: int = 0, codec: str | None = None) -> pva.NtNdArray:
    """One NTNDArray (``uniqueId`` 0) for a frame shaped as :func:`frame_shape` gives.

    Built by :func:`pvhpc.ntnda.make_frame`, so that what the
    simulator serves is exactly what the image helpers of consumers decode:
    ``value`` in the union field of the pixel type (or, with ``codec``, the
    compressed bytes in ``ubyteValue`` and the pixel type in ``codec.parameters``),
    ``dimension`` fastest-varying first (``3, nx, ny`` for RGB1, ``nx, 3, ny`` for
    RGB2, ``nx, ny, 3`` for RGB3), and a ``ColorMode`` attribute. The publisher sets
    the timestamps and ids.
    """
    if data.dtype.name not in DATATYPES:
        raise UsageError(f"--datatype: {data.dtype} cannot be carried by an NTNDArray")
    return make_frame(data, 0, color_mode=int(color_mode), codec=codec or None)


def prepare_frames(c: SimulatorConfig) -> list[pva.NtNdArray]:
    """Every frame to serve, built; with an input, ``c``'s ``nx``, ``ny`` and ``datatype``
    become the input's. UsageError for an input that does not fit."""
    t = time.perf_counter()
    if c.input_file or c.input_directory:
        limit = min(c.n_frames, c.cache_size) if c.n_frames else c.cache_size
        data = load_frames(
            c.input_file, c.input_directory, c.color_mode, limit, c.hdf5_dataset, c.mmap_mode
        )
        c.ny, c.nx = data.shape[1:3]
        c.datatype = data.dtype.name
    else:
        value_range(c.datatype, c.min_value, c.max_value)
        if c.n_frames:
            n = c.n_frames
        else:
            frame_bytes = c.nx * c.ny * (1 if c.color_mode == 0 else 3)
            frame_bytes *= np.dtype(c.datatype).itemsize
            n = max(1, min(c.cache_size, DEFAULT_MEMORY_BUDGET // frame_bytes))
        if n > c.cache_size:
            logger.warning(
                "--n-frames %d is more than --cache-size %d; preparing %d frames",
                n,
                c.cache_size,
                c.cache_size,
            )
            n = c.cache_size
        data = generate_frames(
            n, c.nx, c.ny, c.datatype, c.color_mode, c.min_value, c.max_value, c.seed
        )
    frames = [build_frame(data[k], c.color_mode, c.compression_codec) for k in range(data.shape[0])]
    logger.info(
        "prepared %d %s frames of %dx%d (%s) in %.2f s",
        len(frames),
        c.datatype,
        c.nx,
        c.ny,
        COLOR_MODES[c.color_mode],
        time.perf_counter() - t,
    )
    return frames
