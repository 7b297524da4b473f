"""``pvapy-mirror-server``'s options (SPEC §3.3)."""

from __future__ import annotations

from ..channel_map import SYNTAX
from .common import Parser, add_version, log_level, seconds

__all__ = ["PROG", "build_parser"]

PROG = "pvapy-mirror-server"


def build_parser(prog: str = PROG) -> Parser:
    """The command's option parser (short and long names as in SPEC §3.3)."""
    p = Parser(
        prog=prog,
        description="Serve each dst channel with the latest object of its src channel "
        "(PVA or CA). The dst channels support server queues and the distributor plugin.",
    )
    add_version(p)
    p.add_argument(
        "-cm",
        "--channel-map",
        required=True,
        help=f"{SYNTAX},(...): pva or ca source [pva], server queue asked of the source "
        "[0 = none], and optionally N source monitors with this request, e.g. "
        "(img,ad:image,pva,1000,2,_[pydistributor=updates:1])",
    )
    p.add_argument(
        "-rt", "--runtime", type=seconds, default=0.0, help="seconds to run, <= 0 until stopped [0]"
    )
    p.add_argument(
        "-rp",
        "--report-period",
        type=seconds,
        default=0.0,
        help="seconds between per-channel reports, <= 0 only the final one [0]",
    )
    p.add_argument(
        "-rf",
        "--report-format",
        choices=("text", "json"),
        default="text",
        help="report format: aligned text, or one JSON object a line [text]",
    )
    p.add_argument(
        "-ll", "--log-level", type=log_level, default=None, help="log level [warnings only]"
    )
    p.add_argument("-lf", "--log-file", default=None, help="log to this file instead of stderr")
    p.add_argument(
        "-dc",
        "--disable-curses",
        action="store_true",
        help="accepted for compatibility (the output is plain lines)",
    )
    return p
