"""``pvapy-ad-sim-server``'s options (SPEC §3.4) and the simulator configuration they make."""

from __future__ import annotations

import argparse

from ..codecs import CODECS
from ..simulator import COLOR_MODES, DATATYPES, PACING_MODES, REPORT_FORMATS, SimulatorConfig
from ..simulator.config import ID_MODES, TIMING_MODES
from .common import Parser, add_version, log_level, number

__all__ = ["PROG", "build_parser", "config_from_args"]

PROG = "pvapy-ad-sim-server"


_positive_int = number(int, lambda v: v > 0, "a positive integer")
_non_negative_int = number(int, lambda v: v >= 0, "a non-negative integer")
_positive_float = number(float, lambda v: 0 < v < float("inf"), "a positive number")
_non_negative_float = number(float, lambda v: 0 <= v < float("inf"), "a non-negative number")
_float = number(float, lambda v: v == v, "a number")


def _color_mode(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value not in COLOR_MODES:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a color mode (0 mono, 2 RGB1, 3 RGB2, 4 RGB3)"
        )
    return value


def build_parser(prog: str = PROG) -> Parser:
    """The command's option parser (short and long names as in SPEC §3.4)."""
    p = Parser(
        prog=prog,
        description="Serve simulated area-detector frames (NTNDArray) on a PVA channel "
        "at a steady rate, optionally with PVA/CA metadata channels.",
    )
    add_version(p)
    p.add_argument(
        "-cn", "--channel-name", default="pvapy:image", help="frame channel [pvapy:image]"
    )
    p.add_argument(
        "-nx", "--n-x-pixels", dest="nx", type=_positive_int, default=256, help="frame width [256]"
    )
    p.add_argument(
        "-ny", "--n-y-pixels", dest="ny", type=_positive_int, default=256, help="frame height [256]"
    )
    p.add_argument(
        "-dt",
        "--datatype",
        default="uint8",
        choices=list(DATATYPES),
        metavar="TYPE",
        help=f"pixel type: {', '.join(DATATYPES)} [uint8]",
    )
    p.add_argument(
        "-cm",
        "--color-mode",
        type=_color_mode,
        default=0,
        help="0 mono, 2 RGB1 (3 x nx x ny), 3 RGB2, 4 RGB3 [0]",
    )
    p.add_argument(
        "-mn",
        "--min-value",
        type=_float,
        default=None,
        help="smallest random pixel value [type minimum, 0.0 for floats]",
    )
    p.add_argument(
        "-mx",
        "--max-value",
        type=_float,
        default=None,
        help="largest random pixel value [type maximum, 1.0 for floats]",
    )
    p.add_argument(
        "-fps", "--frame-rate", type=_positive_float, default=20.0, help="frames per second [20]"
    )
    p.add_argument(
        "-pm",
        "--pacing",
        default="even",
        choices=list(PACING_MODES),
        metavar="MODE",
        help="even: one frame per deadline, evenly spaced, as a detector sends them; "
        "burst: wake up at most once per ms and publish every frame due by then "
        "(less CPU above 1 kHz, frames in bursts of fps/1000) [even]",
    )
    p.add_argument(
        "-rt",
        "--runtime",
        type=_float,
        default=300.0,
        help="seconds of publishing, <= 0 until stopped [300]",
    )
    p.add_argument(
        "-nf",
        "--n-frames",
        type=_non_negative_int,
        default=0,
        help="distinct frames to prepare and cycle through "
        "[0: all of the input, or as many random frames as the cache holds]",
    )
    p.add_argument(
        "-cs",
        "--cache-size",
        type=_positive_int,
        default=1000,
        help="most frames prepared in memory [1000]",
    )
    p.add_argument(
        "-if",
        "--input-file",
        default=None,
        help="frames from a .npy file, an HDF5 file with --hdf5-dataset, or a recording "
        "of pvhpc record (replayed: see --timing, --ids, --loop)",
    )
    p.add_argument(
        "-tm",
        "--timing",
        default="rate",
        choices=list(TIMING_MODES),
        metavar="MODE",
        help="rate: frames evenly at --frame-rate; original: a recording's own timing, "
        "bursts and gaps as recorded [rate]",
    )
    p.add_argument(
        "-sp",
        "--speed",
        type=_positive_float,
        default=1.0,
        help="with --timing original: play this many times faster [1]",
    )
    p.add_argument(
        "--ids",
        default=None,
        choices=list(ID_MODES),
        metavar="MODE",
        help="a recording's uniqueIds (original) or new ones from 1 (new) "
        "[original with --timing original, else new]",
    )
    p.add_argument(
        "-lp",
        "--loop",
        action="store_true",
        help="with --timing original: play the recording again and again, ids continuing "
        "(--timing rate always cycles)",
    )
    p.add_argument("-hds", "--hdf5-dataset", default=None, help="dataset of the HDF5 input file")
    p.add_argument(
        "-id",
        "--input-directory",
        default=None,
        help="frames from every .npy file of this directory, in name order",
    )
    p.add_argument(
        "-mm",
        "--mmap-mode",
        action="store_true",
        help="memory-map .npy input instead of reading it whole",
    )
    p.add_argument(
        "-mpv",
        "--metadata-pv",
        default=None,
        help="metadata channels pva://x,ca://y,y (no prefix = CA) updated with every frame",
    )
    p.add_argument(
        "-std",
        "--start-delay",
        type=_non_negative_float,
        default=10.0,
        help="seconds between creating the channel and the first frame [10]",
    )
    p.add_argument(
        "-shd",
        "--shutdown-delay",
        type=_non_negative_float,
        default=10.0,
        help="seconds the channel stays up after the last frame [10]",
    )
    p.add_argument(
        "-rp",
        "--report-period",
        type=_non_negative_int,
        default=0,
        help="print a report every this many frames, 0 = only at the end [0]",
    )
    p.add_argument(
        "-rf",
        "--report-format",
        default="text",
        choices=list(REPORT_FORMATS),
        metavar="FORMAT",
        help="text: report lines for people; json: the start line and every report as "
        "one JSON object per line on stdout [text]",
    )
    p.add_argument(
        "-cd",
        "--compression-codec",
        default=None,
        choices=list(CODECS),
        metavar="CODEC",
        help="publish frames compressed: lz4, bslz4, blosc, or jpeg (lossy, uint8)",
    )
    p.add_argument(
        "-dc",
        "--disable-curses",
        action="store_true",
        help="accepted for compatibility (the output is plain lines)",
    )
    p.add_argument(
        "-ll", "--log-level", type=log_level, default=None, help="log level [warnings only]"
    )
    p.add_argument("-lf", "--log-file", default=None, help="log to this file instead of stderr")
    return p


def config_from_args(args: argparse.Namespace) -> SimulatorConfig:
    """A :class:`SimulatorConfig` from parsed options."""
    return SimulatorConfig(
        channel_name=args.channel_name,
        nx=args.nx,
        ny=args.ny,
        datatype=args.datatype,
        color_mode=args.color_mode,
        min_value=args.min_value,
        max_value=args.max_value,
        frame_rate=args.frame_rate,
        runtime=args.runtime,
        n_frames=args.n_frames,
        cache_size=args.cache_size,
        input_file=args.input_file,
        hdf5_dataset=args.hdf5_dataset,
        input_directory=args.input_directory,
        mmap_mode=args.mmap_mode,
        metadata_pvs=args.metadata_pv,
        start_delay=args.start_delay,
        shutdown_delay=args.shutdown_delay,
        report_period=args.report_period,
        compression_codec=args.compression_codec,
        pacing=args.pacing,
        report_format=args.report_format,
        timing=args.timing,
        speed=args.speed,
        ids=args.ids,
        loop=args.loop,
    )
