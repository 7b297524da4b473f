"""``pvhpc record``'s options and the consumer configuration and recorder settings
they make."""

from __future__ import annotations

import argparse
import re

from ..endpoints import Endpoint, parse_channel_list
from ..errors import UsageError
from ..ids import channel_name
from ..processors.recorder import settings_from_config
from ..record.recorder import check_output_path
from ..record.trigger import parse_trigger
from ..runtime.config import StageConfig
from .common import Parser, add_version, log_level, number, seconds

__all__ = ["PROG", "build_parser", "parse_size", "record_config"]

PROG = "pvhpc record"

_non_negative_int = number(int, lambda v: v >= 0, "a whole number >= 0")
_non_negative = number(float, lambda v: 0 <= v < float("inf"), "a number >= 0")
_positive = number(float, lambda v: 0 < v < float("inf"), "a number > 0")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)i?[bB]?\s*$")
_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}


def parse_size(text: str) -> int:
    """An argparse type: bytes, with an optional k/M/G/T suffix (``500M``, ``2G``)."""
    match = _SIZE.match(text)
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size such as 500M or 2G")
    return int(float(match[1]) * _UNITS[match[2].lower()])


def build_parser(prog: str = PROG) -> Parser:
    """The command's option parser."""
    p = Parser(
        prog=prog,
        description="Record a PVA frame channel (NTNDArray) and its metadata channels "
        "into HDF5 files, frames stored as they arrived; or keep the last seconds in "
        "memory and write them when told (--ring).",
        allow_abbrev=False,
    )
    add_version(p)
    a = p.add_argument
    a("-ic", "--input-channel", required=True, help="the frame channel (PVA)")
    a("-o", "--output-file", required=True, help="the recording, e.g. run.h5 (never overwritten)")
    a("-mc", "--metadata-channels", help="pva://name,ca://name,name (no prefix: CA) to record too")
    a(
        "-sqs",
        "--server-queue-size",
        type=_non_negative_int,
        default=100,
        help="server queue size, also for pva metadata channels [100]",
    )
    a(
        "-rqs",
        "--receiver-queue-size",
        type=int,
        default=-1,
        help="<0: write in the monitor callback; >=0: receiver queue size (0: unbounded) [-1]",
    )
    a(
        "-rt",
        "--runtime",
        type=seconds,
        default=0.0,
        help="seconds to record, <=0: until stopped [0]",
    )
    a("-mf", "--max-frames", type=_non_negative_int, default=0, help="stop after N frames [0: no]")
    a(
        "-ms",
        "--max-size",
        type=parse_size,
        default=0,
        help="stop before SIZE of frame data [0: no]",
    )
    a(
        "-ff",
        "--file-frames",
        type=_non_negative_int,
        default=0,
        help="start the next numbered file (run_0002.h5...) after N frames [0: one file]",
    )
    a(
        "-fs",
        "--file-size",
        type=parse_size,
        default=0,
        help="start the next numbered file before a file passes SIZE [0: one file]",
    )
    a(
        "-rg",
        "--ring",
        type=_non_negative,
        default=0.0,
        metavar="SECONDS",
        help="flight recorder: keep only the last SECONDS in memory; write them on a "
        "'dump' control command or when --trigger fires [0: record everything]",
    )
    a(
        "-rgm",
        "--ring-memory",
        type=parse_size,
        default=0,
        metavar="SIZE",
        help="with --ring: the most frame data the ring keeps; a heavier stream keeps "
        "fewer seconds [0: a quarter of this machine's memory]",
    )
    a(
        "-tr",
        "--trigger",
        help="with --ring: dump when a metadata value makes CHANNEL OP NUMBER true, "
        "e.g. 'pva://shutter<0.5' (OP: < <= > >= == !=)",
    )
    a("-id", "--consumer-id", type=int, default=1, help="consumer id, for '_' channel names [1]")
    a("-sc", "--status-channel", help="status channel; '_' = pvapy:consumer:<id>:status")
    a("-cc", "--control-channel", help="control channel ('dump', 'stop'); '_' = default name")
    a("-of", "--oid-field", default="uniqueId", help="object id field [uniqueId]")
    a(
        "-siu",
        "--skip-initial-updates",
        type=_non_negative_int,
        default=1,
        help="first N updates are neither recorded nor counted [1]",
    )
    a(
        "-fp",
        "--flush-period",
        type=_positive,
        default=1.0,
        help="seconds between flushes (the file is complete up to then) [1]",
    )
    a(
        "-rp",
        "--report-period",
        type=seconds,
        default=1.0,
        help="seconds between progress lines, <=0: final lines only [1]",
    )
    a(
        "-rf",
        "--report-format",
        choices=("text", "json"),
        default="text",
        help="text: progress lines; json: the status as one JSON object a line [text]",
    )
    a("-ll", "--log-level", type=log_level, help="debug, info, warning, error [no log output]")
    a("-lf", "--log-file", help="log to this file instead of stderr")
    return p


def record_config(args: argparse.Namespace) -> tuple[StageConfig, dict]:
    """The consumer's configuration and the StreamRecorder's arguments; UsageError
    naming the option of a mistake (a bad output path among them)."""
    if not args.input_channel.strip():
        raise UsageError("--input-channel is empty")
    metadata = parse_channel_list(args.metadata_channels, "--metadata-channels")
    if args.trigger and not args.ring:
        raise UsageError("--trigger needs --ring SECONDS (it dumps the flight recorder)")
    if args.ring_memory and not args.ring:
        raise UsageError("--ring-memory needs --ring SECONDS (it limits the flight recorder)")
    if args.ring and not (args.trigger or args.control_channel):
        raise UsageError(
            "--ring needs a way to dump: --control-channel (for the 'dump' command) or --trigger"
        )
    processor_args = {
        "outputFile": args.output_file,
        "maxFrames": args.max_frames,
        "maxBytes": args.max_size,
        "fileFrames": args.file_frames,
        "fileBytes": args.file_size,
        "ringSeconds": args.ring,
        "ringBytes": args.ring_memory,
        "flushPeriod": args.flush_period,
    }
    if args.trigger:
        parse_trigger(args.trigger, "--trigger")
        processor_args["trigger"] = args.trigger
    settings = settings_from_config(processor_args)
    if settings.trigger is not None:
        name = settings.trigger.endpoint.name
        if not any(m.name == name for m in metadata):
            metadata.append(settings.trigger.endpoint)
    processor_args["metadataChannels"] = ",".join(_channel_text(m) for m in metadata)
    check_output_path(settings)

    def chan(template, role):
        return channel_name(template, "consumer", role, args.consumer_id, None)

    config = StageConfig(
        kind="consumer",
        stage_id=args.consumer_id,
        input_channel=args.input_channel.strip(),
        status_channel=chan(args.status_channel, "status"),
        control_channel=chan(args.control_channel, "control"),
        server_queue_size=args.server_queue_size,
        receiver_queue_size=args.receiver_queue_size,
        oid_field=args.oid_field,
        skip_initial_updates=args.skip_initial_updates,
        metadata_channels=metadata,
        runtime=args.runtime,
        report_period=args.report_period,
        report_format=args.report_format,
    )
    return config, processor_args


def _channel_text(endpoint: Endpoint) -> str:
    return f"{endpoint.protocol}://{endpoint.name}"
