"""What the simulator serves and how fast (:class:`SimulatorConfig`), how each setting is
checked (:func:`validate`), and what a run reports (:class:`SimulatorStats`)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from .. import codecs
from ..errors import UsageError
from ..ntnda import DTYPE_FIELDS

__all__ = [
    "COLOR_MODES",
    "DATATYPES",
    "PACING_MODES",
    "ID_MODES",
    "REPORT_FORMATS",
    "SimulatorConfig",
    "TIMING_MODES",
    "SimulatorStats",
    "check_codec",
    "validate",
]

#: Our datatype names and the NTNDArray ``value`` union field that holds each.
DATATYPES: dict[str, str] = {
    dtype.name: field for dtype, field in DTYPE_FIELDS.items() if dtype.kind != "b"
}

#: areaDetector colour modes we serve: mono and the three RGB layouts.
COLOR_MODES: dict[int, str] = {0: "Mono", 2: "RGB1", 3: "RGB2", 4: "RGB3"}

#: How frames are paced: one per deadline, or every due frame at once.
PACING_MODES = ("even", "burst")
#: Report formats: lines for people, or one JSON object per line for programs.
REPORT_FORMATS = ("text", "json")
#: ``--timing``: an even rate, or a recording's own timing.
TIMING_MODES = ("rate", "original")
#: ``--ids``: a recording's ``uniqueId`` values, or new ones from 1.
ID_MODES = ("original", "new")


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
    replaces ``nx``, ``ny`` and ``datatype`` by those of the input. ``timing``,
    ``speed``, ``ids`` and ``loop`` apply to a recording (an ``input_file`` written by
    ``pvhpc record``): see :mod:`pvhpc.simulator.replay`; ``ids=None`` means
    ``original`` with ``timing="original"``, ``new`` otherwise.
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
    timing: str = "rate"
    speed: float = 1.0
    ids: str | None = None
    loop: bool = False


def validate(c: SimulatorConfig, metadata_names: list[str]) -> None:
    """Raise :class:`UsageError` naming the option of the first setting that cannot hold."""
    if c.datatype not in DATATYPES:
        raise UsageError(f"--datatype: {c.datatype!r} is not one of {', '.join(DATATYPES)}")
    if c.color_mode not in COLOR_MODES:
        raise UsageError(f"--color-mode: {c.color_mode} is not one of 0 (mono), 2, 3, 4 (RGB1-3)")
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
    if c.channel_name in metadata_names:
        raise UsageError(f"--metadata-pv: {c.channel_name!r} is also the frame channel")
    if c.pacing not in PACING_MODES:
        raise UsageError(f"--pacing: {c.pacing!r} is not one of {', '.join(PACING_MODES)}")
    if c.report_format not in REPORT_FORMATS:
        raise UsageError(
            f"--report-format: {c.report_format!r} is not one of {', '.join(REPORT_FORMATS)}"
        )
    if c.timing not in TIMING_MODES:
        raise UsageError(f"--timing: {c.timing!r} is not one of {', '.join(TIMING_MODES)}")
    if c.ids is not None and c.ids not in ID_MODES:
        raise UsageError(f"--ids: {c.ids!r} is not one of {', '.join(ID_MODES)}")
    if not (c.speed > 0 and math.isfinite(c.speed)):
        raise UsageError(f"--speed: {c.speed} is out of range")
    if c.compression_codec is not None and c.compression_codec not in codecs.CODECS:
        raise UsageError(
            f"--compression-codec: {c.compression_codec!r} is not one of {', '.join(codecs.CODECS)}"
        )
    if c.compression_codec == "jpeg" and c.datatype != "uint8" and not c.input_file:
        raise UsageError(
            f"--compression-codec jpeg: JPEG holds uint8 pixels only, not {c.datatype}; "
            "give --datatype uint8"
        )
    if c.compression_codec == "jpeg" and c.color_mode in (3, 4):
        raise UsageError(
            f"--compression-codec jpeg: JPEG holds mono or RGB1 images, not color mode "
            f"{c.color_mode}; give --color-mode 0 or 2"
        )


def check_codec(codec: str | None) -> None:
    """UsageError if ``codec`` is set and its library cannot compress (not installed)."""
    if not codec:
        return
    try:
        codecs.compress(np.zeros(8, np.uint8), codec)
    except codecs.CodecError as exc:
        raise UsageError(f"--compression-codec: {codec}: {exc}") from None


@dataclasses.dataclass
class SimulatorStats:
    """What a run did: frames published, over how long, at what rate, how evenly.

    Times are in seconds. ``cpu`` is the process CPU time (every thread) over
    ``elapsed``; ``gap_p50``/``gap_p99`` are the median and 99th percentile of the
    time between consecutive frames, taken when each was handed to the server (None
    before the second frame); in a final report over the whole run (its last
    million frames), in a periodic one over the frames since the last.
    ``late_p50``/``late_p99`` (final report): how long after its deadline a frame
    went out, the timing error of a replay.
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
    late_p50: float | None = None
    late_p99: float | None = None

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
            "lateP50": self.late_p50,
            "lateP99": self.late_p99,
            "nRestarts": self.n_restarts,
            "final": final,
        }
