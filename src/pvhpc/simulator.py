"""The area-detector frame simulator behind ``pvapy-ad-sim-server`` (SPEC §3.4).

:class:`Simulator` serves NTNDArray frames on one PVA channel at a steady rate.
All frames are prepared before the first one goes out (random data from numpy's
generator, or frames read from ``.npy``/HDF5 files); publishing a frame then only
stamps ``uniqueId``, ``timeStamp`` and ``dataTimeStamp`` on a prepared object and
hands it to :meth:`pvaccess.PvaServer.update` (a few microseconds of Python; with a
monitor connected, pvAccess spends about 20 more in ``update`` posting the frame to
it, and its sender thread as much again).

Pacing is against absolute deadlines: frame *i* (counting from 0) is due at
``t0 + i / frame_rate``. By default (``pacing="even"``) frames go out as a detector
sends them, one per deadline: the loop sleeps until the next deadline (with the
thread's timer slack at 1 ns, so that the kernel wakes it when asked rather than up
to 50 us later), publishes that one frame and looks at the clock again. A frame that
is already due when the previous one is out (the loop woke late, or publishing took
longer than a period) goes out at once, so the average rate stays exact; frames are
never sent before their deadline. Waits shorter than ``_SPIN`` are spun instead:
such a sleep costs more CPU than the wait and wakes later than the deadline.

``pacing="burst"`` is the cheaper option for high rates: each wake-up publishes
every frame already due, and above 1000 frames per second the loop sleeps at least a
millisecond (``_TICK``), so that frames leave in bursts of ``frame_rate / 1000``
(a sleep and wake-up costs more CPU than publishing a frame).

In both modes, if the loop falls more than a second behind (the machine cannot keep
up, or the process was suspended) the schedule restarts from the present instead of
sending a second's worth of frames at once. The reports give the inter-frame gaps
(median and 99th percentile) measured at publish time, next to the rate.

Metadata channels (``pva://x``, ``ca://y`` or a bare ``y``) carry
``{double value, time_t timeStamp}``; each is updated just before every frame with
the frame's ``uniqueId`` as value and the frame's own timestamp. PVA ones are extra
records on the simulator's PvaServer; CA ones are records of an embedded
:class:`pvaccess.CaIoc`, whose timestamps are made equal to the frame's by taking
the frame timestamp from an IOC clock record that the metadata records copy
theirs from (``TSEL``).

Before the first frame the channel holds *frame 0*: the first prepared image with
``uniqueId`` 0. A monitor's first update is always the channel's current value, so
a consumer that skips one initial update (``--skip-initial-updates 1``, the default)
drops exactly that value, whether it connected before the start (frame 0) or in
the middle of the stream (the frame current at that moment).
"""

from __future__ import annotations

import ctypes
import dataclasses
import glob
import json
import logging
import math
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pvaccess as pva

from .errors import UsageError
from .ntnda import make_frame

__all__ = [
    "COLOR_MODES",
    "DATATYPES",
    "MetadataPv",
    "PACING_MODES",
    "REPORT_FORMATS",
    "Simulator",
    "SimulatorConfig",
    "SimulatorStats",
    "build_frame",
    "frame_shape",
    "generate_frames",
    "load_frames",
    "parse_metadata_pvs",
    "value_range",
]

logger = logging.getLogger("pvhpc.simulator")

#: Our datatype names and the NTNDArray ``value`` union field that holds each.
DATATYPES: dict[str, str] = {
    "int8": "byteValue",
    "uint8": "ubyteValue",
    "int16": "shortValue",
    "uint16": "ushortValue",
    "int32": "intValue",
    "uint32": "uintValue",
    "int64": "longValue",
    "uint64": "ulongValue",
    "float32": "floatValue",
    "float64": "doubleValue",
}

#: areaDetector colour modes we serve: mono and the three RGB layouts.
COLOR_MODES: dict[int, str] = {0: "Mono", 2: "RGB1", 3: "RGB2", 4: "RGB3"}

CODECS = ("lz4", "bslz4", "blosc")
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".nxs")
# Without -nf, random frames are prepared up to the cache size but never more
# than this many bytes, so that a large -nx/-ny cannot exhaust memory by default.
DEFAULT_MEMORY_BUDGET = 1 << 30
# Seconds the channel stays up after a stop, for frames already published to arrive.
STOP_LINGER = 1.0

# Further behind schedule than this, pacing restarts from the present.
MAX_LAG = 1.0
# A frame due before the end of the runtime is still sent this late; later, the
# runtime wins (the machine is not keeping up).
END_GRACE = 0.1
# Waits shorter than this use time.sleep; longer ones wait on the stop event.
_SHORT_WAIT = 0.05
# Even pacing spins through waits shorter than this instead of sleeping: on the
# development machine a sleep costs 30-45 us of CPU and wakes 35-50 us late even
# with a timer slack of 1 ns, so a short spin is both cheaper and on time.
_SPIN = 20e-6
# Burst pacing: above 1/_TICK frames per second, the simulator wakes up once per
# tick and publishes the frames that came due meanwhile in one burst.
_TICK = 0.001
# Inter-frame gaps are computed from the publish times of at most this many recent
# frames (8 MiB; 100 s at 10 kHz).
_GAP_SAMPLES = 1 << 20
# prctl(2) options for the calling thread's timer slack.
_PR_SET_TIMERSLACK = 29
_PR_GET_TIMERSLACK = 30

#: How frames are paced: one per deadline, or every due frame at once.
PACING_MODES = ("even", "burst")
#: Report formats: lines for people, or one JSON object per line for programs.
REPORT_FORMATS = ("text", "json")


@dataclasses.dataclass
class SimulatorConfig:
    """What the simulator serves and how fast; the fields mirror the command's options.

    ``runtime <= 0`` runs until :meth:`Simulator.stop`. ``n_frames == 0`` means: every
    frame of the input, or as many random frames as the cache holds (within
    1 GiB). ``min_value``/``max_value`` default to the datatype's full range for
    integers and to [0, 1) for floats. ``report_period`` is in frames, 0 = only the
    final report. ``pacing`` is one of :data:`PACING_MODES` (``"even"``: one frame
    per deadline; ``"burst"``: every due frame at once), ``report_format`` one of
    :data:`REPORT_FORMATS`. With an input file or directory, :class:`Simulator`
    replaces ``nx``, ``ny`` and ``datatype`` by those of the input.
    """

    channel_name: str = "pvapy:image"
    nx: int = 256
    ny: int = 256
    datatype: str = "uint8"
    color_mode: int = 0
    min_value: float | None = None
    max_value: float | None = None
    frame_rate: float = 20.0
    runtime: float = 300.0
    n_frames: int = 0
    cache_size: int = 1000
    input_file: str | None = None
    hdf5_dataset: str | None = None
    input_directory: str | None = None
    mmap_mode: bool = False
    metadata_pvs: str | None = None
    start_delay: float = 10.0
    shutdown_delay: float = 10.0
    report_period: int = 0
    compression_codec: str | None = None
    seed: int | None = None
    pacing: str = "even"
    report_format: str = "text"


@dataclasses.dataclass
class SimulatorStats:
    """What a run did: frames published, over how long, at what rate, how evenly.

    Times are in seconds. ``cpu`` is the process CPU time (every thread) over
    ``elapsed``; ``gap_p50``/``gap_p99`` are the median and 99th percentile of the
    time between consecutive frames, taken when each was handed to the server (None
    before the second frame); in a final report over the whole run (its last
    :data:`_GAP_SAMPLES` frames), in a periodic one over the frames since the last.
    """

    channel_name: str
    frame_rate: float
    pacing: str = "even"
    n_sent: int = 0
    elapsed: float = 0.0
    cpu: float = 0.0
    max_lag: float = 0.0
    n_restarts: int = 0
    gap_p50: float | None = None
    gap_p99: float | None = None

    @property
    def rate(self) -> float:
        """Achieved frames per second (0 before the first frame)."""
        return self.n_sent / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def cpu_percent(self) -> float:
        """CPU time as a percentage of one core over ``elapsed``."""
        return 100.0 * self.cpu / self.elapsed if self.elapsed > 0 else 0.0

    def line(self, final: bool = False) -> str:
        """One readable report line, e.g. for stdout."""
        text = (
            f"{self.channel_name}: {'done, ' if final else ''}sent {self.n_sent} frames in "
            f"{self.elapsed:.3f} s, {self.rate:.2f} fps (requested {self.frame_rate:g}, "
            f"pacing {self.pacing})"
        )
        if self.gap_p50 is not None and self.gap_p99 is not None:
            text += f", gap p50 {1e3 * self.gap_p50:.3f} ms p99 {1e3 * self.gap_p99:.3f} ms"
        text += f", cpu {self.cpu_percent:.0f}%, max lag {1e3 * self.max_lag:.2f} ms"
        if self.n_restarts:
            text += f", schedule restarted {self.n_restarts}x (cannot keep up)"
        return text

    def as_dict(self, final: bool = False) -> dict[str, Any]:
        """The report as one JSON-ready object (``event: "report"``; times in seconds,
        ``cpu`` in percent of one core, ``gapP50``/``gapP99`` null before two frames)."""
        return {
            "event": "report",
            "channel": self.channel_name,
            "mode": self.pacing,
            "nSent": self.n_sent,
            "elapsed": self.elapsed,
            "rate": self.rate,
            "requestedRate": self.frame_rate,
            "cpu": self.cpu_percent,
            "maxLag": self.max_lag,
            "gapP50": self.gap_p50,
            "gapP99": self.gap_p99,
            "nRestarts": self.n_restarts,
            "final": final,
        }


@dataclasses.dataclass(frozen=True)
class MetadataPv:
    """One metadata channel: its name and protocol (``pva`` or ``ca``)."""

    name: str
    protocol: str


def parse_metadata_pvs(text: str | None, option: str = "--metadata-pv") -> list[MetadataPv]:
    """Parse ``pva://x,ca://y,y`` (no prefix = CA) into a list; UsageError if malformed."""
    if not text:
        return []
    result: list[MetadataPv] = []
    for item in text.split(","):
        item = item.strip()
        protocol = "ca"
        if "://" in item:
            protocol, _, name = item.partition("://")
            protocol = protocol.lower()
        else:
            name = item
        if protocol not in ("pva", "ca"):
            raise UsageError(
                f"{option}: {item!r} has unknown protocol {protocol!r} (use pva:// or ca://)"
            )
        if not name or any(c.isspace() for c in name):
            raise UsageError(f"{option}: {text!r} contains an empty or blank channel name")
        if any(m.name == name for m in result):
            raise UsageError(f"{option}: channel {name!r} is given twice")
        result.append(MetadataPv(name, protocol))
    return result


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


def _metadata_object() -> pva.PvObject:
    return pva.PvObject({"value": pva.DOUBLE, "timeStamp": pva.PvTimeStamp()})


class _CaMetadata:
    """CA metadata records on an embedded IOC, stamped with a clock record's time.

    Per frame, :meth:`tick` processes the clock record, whose time becomes the
    frame's timestamp; the metadata records copy that time through ``TSEL`` when
    :meth:`update` writes their values. One CA IOC can be started per process.
    """

    def __init__(self, names: list[str], tag: str, quiet: bool):
        self.names = names
        self.clock = f"{tag}:clock"
        self.clock_text = f"{tag}:clockText"
        dbd_path = _dbd_path()
        records = [
            f'record(ai, "{self.clock}") {{ field(FLNK, "{self.clock_text}") }}',
            f'record(stringin, "{self.clock_text}") {{ field(DTYP, "Soft Timestamp") '
            f'field(INP, "@%s.%09f") field(TSEL, "{self.clock}.TIME") }}',
        ]
        records += [
            f'record(ai, "{name}") {{ field(PREC, "6") field(TSEL, "{self.clock}.TIME") }}'
            for name in names
        ]
        ioc = pva.CaIoc()
        with tempfile.NamedTemporaryFile("w", suffix=".db", delete=False) as db:
            db.write("\n".join(records) + "\n")
        try:
            with _quiet_stdout(quiet):
                if ioc.dbLoadDatabase("base.dbd", dbd_path, "") != 0:
                    raise RuntimeError(
                        f"cannot load base.dbd from {dbd_path or 'EPICS_DB_INCLUDE_PATH'}"
                    )
                if ioc.pvapyRegisterRecordDeviceDriver() != 0:
                    raise RuntimeError("cannot register the CA IOC's record and device support")
                if ioc.dbLoadRecords(db.name, "") != 0:
                    raise RuntimeError(f"cannot load metadata records {', '.join(names)}")
                if ioc.iocInit() != 0:
                    raise RuntimeError("CA IOC initialisation failed")
        finally:
            os.unlink(db.name)
        self.ioc = ioc

    def tick(self) -> tuple[int, int]:
        """Process the clock record; return its time as (seconds, nanoseconds)."""
        self.ioc.putField(self.clock + ".PROC", 1)
        seconds, _, nanos = self.ioc.getField(self.clock_text).partition(".")
        return int(seconds), int(nanos)

    def update(self, value: float) -> None:
        put = self.ioc.putField
        for name in self.names:
            put(name, value)

    def stop(self) -> None:
        try:
            self.ioc.stop()
        except pva.PvaException as exc:
            logger.debug("CA IOC shutdown: %s", exc)


def _dbd_path() -> str:
    """Where the embedded IOC finds ``base.dbd``: the user's EPICS_DB_INCLUDE_PATH if
    it has one there, else the ``dbd`` folder shipped with pvaccess ('' = use the env)."""
    user = os.environ.get("EPICS_DB_INCLUDE_PATH")
    if user and any(os.path.isfile(os.path.join(d, "base.dbd")) for d in user.split(os.pathsep)):
        return ""
    return os.path.join(os.path.dirname(pva.__file__), "dbd")


class _quiet_stdout:
    """Silence the IOC's banner on file descriptor 1 (not Python's sys.stdout)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.saved: int | None = None

    def __enter__(self):
        if self.enabled:
            try:
                sys.stdout.flush()
                self.saved = os.dup(1)
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, 1)
                os.close(devnull)
            except OSError:
                self.saved = None
        return self

    def __exit__(self, *exc):
        if self.saved is not None:
            os.dup2(self.saved, 1)
            os.close(self.saved)
        return False


class Simulator:
    """Serve prepared NTNDArray frames on a PVA channel at a steady rate.

    Contract:

    - ``Simulator(config)`` validates the configuration and prepares every frame
      (it may take a while for large inputs); it raises :class:`UsageError` for a
      user mistake (bad datatype, missing file, ...). Nothing is served yet.
    - :meth:`run` blocks the calling thread: it creates the channel (holding frame 0),
      waits ``start_delay``, publishes frames 1, 2, ... against absolute deadlines
      until ``runtime`` has passed or :meth:`stop` is called, waits
      ``shutdown_delay`` (unless stopped), stops the server and returns the
      :class:`SimulatorStats`. Progress lines go to ``report`` every
      ``report_period`` frames and once at the end. Call it once.
    - :meth:`stop` may be called from any thread or a signal handler; it returns
      at once and :meth:`run` returns within one frame period (or 50 ms).
    - ``server``: an existing :class:`pvaccess.PvaServer` to add the records to
      (then it is not stopped at the end); by default the simulator owns one.
    """

    def __init__(
        self,
        config: SimulatorConfig,
        report: Callable[[str], None] | None = None,
        server: pva.PvaServer | None = None,
    ):
        self.config = config
        self.report = report or logger.info
        self._own_server = server is None
        self._server = server
        self._stop_event = threading.Event()
        self._quit_event = threading.Event()
        self._running = threading.Event()
        self.stats = SimulatorStats(config.channel_name, config.frame_rate, config.pacing)
        self.metadata = parse_metadata_pvs(config.metadata_pvs)
        self._validate()
        self._check_codec()
        self.frames: list[pva.NtNdArray] = self._prepare()

    def _validate(self) -> None:
        c = self.config
        if c.datatype not in DATATYPES:
            raise UsageError(f"--datatype: {c.datatype!r} is not one of {', '.join(DATATYPES)}")
        if c.color_mode not in COLOR_MODES:
            raise UsageError(
                f"--color-mode: {c.color_mode} is not one of 0 (mono), 2, 3, 4 (RGB1-3)"
            )
        checks = [
            ("-nx", c.nx, c.nx > 0),
            ("-ny", c.ny, c.ny > 0),
            ("--frame-rate", c.frame_rate, c.frame_rate > 0 and math.isfinite(c.frame_rate)),
            ("--cache-size", c.cache_size, c.cache_size > 0),
            ("--n-frames", c.n_frames, c.n_frames >= 0),
            ("--start-delay", c.start_delay, c.start_delay >= 0),
            ("--shutdown-delay", c.shutdown_delay, c.shutdown_delay >= 0),
            ("--report-period", c.report_period, c.report_period >= 0),
        ]
        for option, value, ok in checks:
            if not ok:
                raise UsageError(f"{option}: {value} is out of range")
        if not c.channel_name or any(ch.isspace() for ch in c.channel_name):
            raise UsageError(f"--channel-name: {c.channel_name!r} is not a channel name")
        if c.input_file and c.input_directory:
            raise UsageError("--input-directory: cannot be combined with --input-file")
        if c.hdf5_dataset and not c.input_file:
            raise UsageError("--hdf5-dataset: needs an HDF5 --input-file")
        if any(m.name == c.channel_name for m in self.metadata):
            raise UsageError(f"--metadata-pv: {c.channel_name!r} is also the frame channel")
        if c.pacing not in PACING_MODES:
            raise UsageError(f"--pacing: {c.pacing!r} is not one of {', '.join(PACING_MODES)}")
        if c.report_format not in REPORT_FORMATS:
            raise UsageError(
                f"--report-format: {c.report_format!r} is not one of {', '.join(REPORT_FORMATS)}"
            )
        if c.compression_codec is not None and c.compression_codec not in CODECS:
            raise UsageError(
                f"--compression-codec: {c.compression_codec!r} is not one of {', '.join(CODECS)}"
            )

    def _check_codec(self) -> None:
        codec = self.config.compression_codec
        if not codec:
            return
        from . import codecs

        try:
            codecs.compress(np.zeros(8, np.uint8), codec)
        except codecs.CodecError as exc:
            raise UsageError(f"--compression-codec: {codec}: {exc}") from None

    def _prepare(self) -> list[pva.NtNdArray]:
        c = self.config
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
        frames = [
            build_frame(data[k], c.color_mode, c.compression_codec) for k in range(data.shape[0])
        ]
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

    def stop(self) -> None:
        """Ask :meth:`run` to finish: no more frames, no shutdown delay.

        The channel stays up for :data:`STOP_LINGER` seconds more, so that the frames
        already published reach the clients; a second call ends that at once.
        """
        if self._stop_event.is_set():
            self._quit_event.set()
        self._stop_event.set()

    @property
    def running(self) -> bool:
        """True once the channel exists, until :meth:`run` has finished."""
        return self._running.is_set()

    def run(self) -> SimulatorStats:
        """Serve frames until the runtime is over or :meth:`stop` is called (blocks)."""
        c = self.config
        pva_meta = [m.name for m in self.metadata if m.protocol == "pva"]
        ca_meta = [m.name for m in self.metadata if m.protocol == "ca"]
        ca = None
        if ca_meta:
            tag = f"pvhpc:sim:{os.getpid()}"
            try:
                ca = _CaMetadata(ca_meta, tag, quiet=not logger.isEnabledFor(logging.DEBUG))
            except (RuntimeError, pva.PvaException) as exc:
                raise UsageError(
                    f"--metadata-pv: cannot start the CA IOC for {', '.join(ca_meta)}: {exc}"
                ) from None
        server = self._server
        if server is None:
            server = self._server = pva.PvaServer()
        # The record keeps the object it is created with and publishes changes made
        # to it, so it gets a copy: stamping frames[0] later must not post by itself.
        initial = self.frames[0].copy()
        initial.set(_stamp(0, *divmod(time.time_ns(), 1_000_000_000)))
        server.addRecord(c.channel_name, initial)
        for name in pva_meta:
            server.addRecord(name, _metadata_object())
        self._running.set()
        try:
            self._report_start()
            if c.start_delay > 0:
                self._stop_event.wait(c.start_delay)
            if not self._stop_event.is_set():
                self._publish(server, pva_meta, ca)
            self._report_stats(final=True)
            if c.shutdown_delay > 0 and not self._stop_event.is_set():
                self._stop_event.wait(c.shutdown_delay)
            elif self._stop_event.is_set() and self.stats.n_sent > 0:
                # Stopped mid-stream: the last frames are published but the server
                # sends them on its own threads. Removing the record now would drop
                # them on the way (a consumer then never sees the last id, and no
                # later id shows it missing).
                self._quit_event.wait(STOP_LINGER)
        finally:
            self._running.clear()
            for name in [c.channel_name, *pva_meta]:
                try:
                    server.removeRecord(name)
                except pva.PvaException:
                    pass
            if self._own_server:
                server.stop()
            if ca is not None:
                ca.stop()
        return self.stats

    def _report_start(self) -> None:
        c = self.config
        if c.report_format == "json":
            self.report(
                json.dumps(
                    {
                        "event": "serving",
                        "channel": c.channel_name,
                        "mode": c.pacing,
                        "nDistinct": len(self.frames),
                        "nx": c.nx,
                        "ny": c.ny,
                        "datatype": c.datatype,
                        "colorMode": COLOR_MODES[c.color_mode],
                        "codec": c.compression_codec or None,
                        "requestedRate": c.frame_rate,
                        "runtime": c.runtime if c.runtime > 0 else None,
                        "startDelay": c.start_delay,
                        "metadataPvs": [f"{m.protocol}://{m.name}" for m in self.metadata],
                    }
                )
            )
            return
        self.report(
            f"{c.channel_name}: serving {len(self.frames)} distinct {c.nx}x{c.ny} "
            f"{c.datatype} frames ({COLOR_MODES[c.color_mode]}"
            f"{', ' + c.compression_codec if c.compression_codec else ''}) at {c.frame_rate:g} fps"
            f" (pacing {c.pacing})"
            f"{f' for {c.runtime:g} s' if c.runtime > 0 else ''}"
            f"{f', metadata {self.config.metadata_pvs}' if self.metadata else ''}"
            f"{f'; first frame in {c.start_delay:g} s' if c.start_delay > 0 else ''}"
        )

    def _report_stats(
        self, final: bool, n_recent: int | None = None, recent_rate: float = 0.0
    ) -> None:
        stats = self.stats
        if self.config.report_format == "json":
            record = stats.as_dict(final)
            if n_recent is not None:
                record["nRecent"], record["recentRate"] = n_recent, recent_rate
            self.report(json.dumps(record))
        elif n_recent is not None:
            self.report(f"{stats.line(final)}, last {n_recent} at {recent_rate:.2f} fps")
        else:
            self.report(stats.line(final))

    def _publish(self, server: pva.PvaServer, pva_meta: list[str], ca: _CaMetadata | None) -> None:
        """The publishing loop: sleep until the next frame is due, then publish it
        (even pacing) or every frame already due (burst pacing)."""
        c = self.config
        stats = self.stats
        frames = self.frames
        n_distinct = len(frames)
        channel = c.channel_name
        update = server.update
        period = 1.0 / c.frame_rate
        even = c.pacing == "even"
        # Bursts above 1/_TICK: waking up for every frame costs more CPU than the
        # frame itself (a sleep and wake-up is 30-45 us here), so sleep at least one
        # tick and publish what has come due meanwhile.
        min_sleep = _TICK if not even and period < _TICK else 0.0
        spin = _SPIN if even else 0.0
        report_every = c.report_period
        stop_event = self._stop_event
        stopped = stop_event.is_set
        clock = time.perf_counter
        time_ns = time.time_ns
        sleep = time.sleep
        has_meta = bool(pva_meta) or ca is not None
        # Publish times of the last n_times frames (frame k at k % n_times), for the gaps.
        expected = c.frame_rate * (c.runtime + END_GRACE) + 2 if c.runtime > 0 else math.inf
        n_times = int(min(_GAP_SAMPLES, expected))
        times = np.zeros(n_times)
        saved_slack = _set_timer_slack(1) if even else None
        cpu0 = time.process_time()
        t0 = start = clock()
        end = start + c.runtime if c.runtime > 0 else math.inf
        last_report_t, last_report_n = start, 0
        sent = 0
        last_ns = 0
        max_lag = 0.0
        try:
            while True:
                deadline = t0 + sent * period
                if deadline >= end or stopped():
                    break
                now = clock()
                if now < deadline:
                    wait = max(deadline - now, min_sleep)
                    if wait < spin:
                        while now < deadline:
                            now = clock()
                    else:
                        if wait < _SHORT_WAIT:
                            sleep(wait)
                        elif stop_event.wait(wait):
                            break
                        now = clock()
                elif now >= end + END_GRACE:
                    break
                lag = now - deadline
                if lag > max_lag:
                    if lag > MAX_LAG:
                        t0 = now - sent * period
                        stats.n_restarts += 1
                        if stats.n_restarts == 1:
                            logger.warning(
                                "%s: more than %g s behind schedule; cannot keep up %g fps",
                                channel,
                                MAX_LAG,
                                c.frame_rate,
                            )
                    else:
                        max_lag = lag
                # Even: the frame whose deadline woke us. Burst: every frame due by
                # ``now``, at least that one.
                while True:
                    sent += 1
                    if ca is not None:
                        seconds, nanos = ca.tick()
                    else:
                        # Strictly increasing, also within a burst on a coarse clock:
                        # the distributor tells updates apart by their timestamp.
                        stamp_ns = time_ns()
                        if stamp_ns <= last_ns:
                            stamp_ns = last_ns + 1
                        last_ns = stamp_ns
                        seconds, nanos = divmod(stamp_ns, 1_000_000_000)
                    stamp = {"secondsPastEpoch": seconds, "nanoseconds": nanos}
                    if has_meta:
                        value = float(sent)
                        for name in pva_meta:
                            update(name, {"value": value, "timeStamp": stamp})
                        if ca is not None:
                            ca.update(value)
                    frame = frames[(sent - 1) % n_distinct]
                    frame.set({"uniqueId": sent, "timeStamp": stamp, "dataTimeStamp": stamp})
                    times[sent % n_times] = clock()
                    update(channel, frame)
                    if report_every and sent % report_every == 0:
                        t = clock()
                        stats.n_sent, stats.elapsed = sent, t - start
                        stats.cpu, stats.max_lag = time.process_time() - cpu0, max_lag
                        stats.gap_p50, stats.gap_p99 = _gap_stats(times, last_report_n, sent)
                        interval = t - last_report_t
                        recent = (sent - last_report_n) / interval if interval > 0 else 0.0
                        self._report_stats(False, sent - last_report_n, recent)
                        last_report_t, last_report_n = t, sent
                    deadline = t0 + sent * period
                    if even or deadline > now or deadline >= end or stopped():
                        break
            if not stopped() and math.isfinite(end):
                # Runtime is over: the last frame's period ends at the next deadline,
                # so that n frames take n periods and the rate reads true.
                remaining = t0 + sent * period - clock()
                if remaining > 0:
                    stop_event.wait(remaining)
        finally:
            if saved_slack is not None:
                _set_timer_slack(saved_slack)
        # A frame's period counts whole, also when a stop cuts it short.
        stats.n_sent, stats.elapsed = sent, max(clock(), t0 + sent * period) - start
        stats.cpu, stats.max_lag = time.process_time() - cpu0, max_lag
        stats.gap_p50, stats.gap_p99 = _gap_stats(times, 0, sent)


def _gap_stats(times: np.ndarray, first: int, last: int) -> tuple[float | None, float | None]:
    """Median and 99th percentile of the gaps between frames ``first``..``last`` (their
    publish times at ``k % len(times)``; frame 0 was never published, and only the last
    ``len(times)`` frames are still there); (None, None) without two frames."""
    first = max(first, 1, last - len(times) + 1)
    if last - first < 1:
        return None, None
    gaps = np.diff(times[np.arange(first, last + 1) % len(times)])
    p50, p99 = np.percentile(gaps, (50, 99))
    return float(p50), float(p99)


def _set_timer_slack(nanoseconds: int) -> int | None:
    """Set the calling thread's timer slack (Linux, prctl(2)); return the previous
    value, or None where that is not possible (then sleeps keep the default slack)."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
        prctl.restype = ctypes.c_int
        prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
        previous = prctl(_PR_GET_TIMERSLACK, 0, 0, 0, 0)
        if previous <= 0 or prctl(_PR_SET_TIMERSLACK, nanoseconds, 0, 0, 0) != 0:
            return None
    except (OSError, AttributeError, TypeError):
        return None
    return previous


def _stamp(unique_id: int, seconds: int, nanos: int) -> dict:
    stamp = {"secondsPastEpoch": seconds, "nanoseconds": nanos}
    return {"uniqueId": unique_id, "timeStamp": stamp, "dataTimeStamp": stamp}
