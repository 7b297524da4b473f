"""Options shared by the consumer and the collector (one parser factory), their
cross-option checks, and the :class:`~pvhpc.runtime.config.StageConfig` they make."""

from __future__ import annotations

import argparse

from ..access_security import check_file
from ..endpoints import parse_channel_list
from ..errors import UsageError
from ..ids import channel_name
from ..log import parse_level
from ..runtime.config import StageConfig
from .common import Parser, add_version, json_object, seconds

__all__ = ["stage_parser", "stage_config", "REPORT_SECTIONS"]

REPORT_SECTIONS = (
    "receiver",
    "publisher",
    "queue",
    "metadata",
    "processor",
    "user",
    "collector",
    "all",
)


def stage_parser(kind: str, prog: str, description: str) -> argparse.ArgumentParser:
    """A parser with every option consumers and collectors share."""
    p = Parser(prog=prog, description=description, allow_abbrev=False)
    add_version(p)
    a = p.add_argument
    a(
        "-ic",
        "--input-channel",
        required=True,
        help="input PVA channel; '*' is replaced by the "
        + ("producer" if kind == "collector" else "consumer")
        + " id",
    )
    a(
        "-oc",
        "--output-channel",
        help=f"output channel; '*' = {kind} id, '_' = pvapy:{kind}:<id>:output",
    )
    a("-sc", "--status-channel", help=f"status channel; '*' = {kind} id, '_' = default name")
    a("-cc", "--control-channel", help=f"control channel; '*' = {kind} id, '_' = default name")
    a("-ifs", "--id-format-spec", help="format spec for ids in channel names, e.g. 03d")
    a(
        "-sqs",
        "--server-queue-size",
        type=int,
        default=0,
        help="server queue size, also for pva metadata channels [0: none]",
    )
    a(
        "-rqs",
        "--receiver-queue-size",
        type=int,
        default=-1,
        help="<0: process in the monitor callback; >=0: receiver queue size (0: unbounded) [-1]",
    )
    a(
        "-ao",
        "--accumulate-objects",
        type=int,
        default=-1,
        help="with a receiver queue: wait until this many objects are queued [-1: no]",
    )
    a(
        "-at",
        "--accumulation-timeout",
        type=seconds,
        default=1.0,
        help="...or until this many seconds passed since the last arrival [1]",
    )
    a("-pf", "--processor-file", help="Python file holding the processor class")
    a("-pc", "--processor-class", help="class name in that file, or module.path.ClassName")
    a(
        "-pa",
        "--processor-args",
        type=json_object("--processor-args"),
        default={},
        help="JSON object passed to the processor constructor",
    )
    a("-of", "--oid-field", default="uniqueId", help="object id field [uniqueId]")
    a(
        "-oo",
        "--oid-offset",
        type=int,
        default=0,
        help="expected id step between objects; <=0: derived from the distributor options [0]",
    )
    a("-fr", "--field-request", help="field subset to request (ignored with the distributor)")
    a(
        "-siu",
        "--skip-initial-updates",
        type=int,
        default=1,
        help="first N updates are neither processed nor counted [1]",
    )
    a(
        "-dpn",
        "--distributor-plugin-name",
        default="pydistributor",
        help="[pydistributor] ('distributor' for pvDatabase IOCs)",
    )
    a("-dg", "--distributor-group", help="distributor group")
    a("-ds", "--distributor-set", help="distributor set")
    a("-dt", "--distributor-trigger", help="distributor trigger field [timeStamp]")
    a("-du", "--distributor-updates", type=int, help="sequential updates per client")
    a("-nds", "--n-distributor-sets", type=int, default=1, help="number of distributor sets [1]")
    a("-mc", "--metadata-channels", help="pva://name,ca://name,name (no prefix: CA)")
    a("-rt", "--runtime", type=seconds, default=0.0, help="seconds to run, <=0: until stopped [0]")
    a(
        "-rp",
        "--report-period",
        type=seconds,
        default=0.0,
        help="seconds between reports, <=0: final report only [0]",
    )
    a(
        "-rs",
        "--report-stats",
        default="all",
        help="report subsets: " + ",".join(REPORT_SECTIONS) + " [all]",
    )
    a(
        "-rf",
        "--report-format",
        choices=("text", "json"),
        default="text",
        help="report format: aligned text, or one JSON object a line [text]",
    )
    a("-ll", "--log-level", help="debug, info, warning, error [no log output]")
    a("-lf", "--log-file", help="log to this file instead of stderr")
    a(
        "--restart-failed",
        action="store_true",
        help=f"start a {kind} that dies again, with the same id and options, after a "
        "back-off (1 s, doubling up to 30 s); its frames are accounted for by the set",
    )
    a(
        "--access-security-file",
        metavar="ACF",
        help="EPICS access security file (ACF): who may put on the control channel, by "
        "user and host; the control record is in group CONTROL [anyone may]",
    )
    a("-dc", "--disable-curses", action="store_true", help="accepted for compatibility")
    return p


def validate(args: argparse.Namespace) -> None:
    """Cross-option checks; raise UsageError naming the option. No side effects."""
    if args.log_level:
        try:
            parse_level(args.log_level)
        except ValueError as exc:
            raise UsageError(f"--log-level: {exc}") from None
    if args.accumulate_objects > 0 and args.receiver_queue_size < 0:
        raise UsageError(
            "--accumulate-objects needs a receiver queue: add "
            "--receiver-queue-size N (0 for unbounded)"
        )
    if args.accumulation_timeout <= 0:
        raise UsageError(f"--accumulation-timeout must be > 0, got {args.accumulation_timeout}")
    if args.distributor_updates is not None and args.distributor_updates <= 0:
        raise UsageError(f"--distributor-updates must be > 0, got {args.distributor_updates}")
    if args.n_distributor_sets < 1:
        raise UsageError(f"--n-distributor-sets must be >= 1, got {args.n_distributor_sets}")
    if args.server_queue_size < 0:
        raise UsageError(f"--server-queue-size must be >= 0, got {args.server_queue_size}")
    if args.skip_initial_updates < 0:
        raise UsageError(f"--skip-initial-updates must be >= 0, got {args.skip_initial_updates}")
    sections = [s.strip() for s in args.report_stats.split(",") if s.strip()]
    bad = [s for s in sections if s not in REPORT_SECTIONS]
    if bad or not sections:
        raise UsageError(
            f"--report-stats: unknown subset {','.join(bad) or args.report_stats!r}; "
            f"use {','.join(REPORT_SECTIONS)}"
        )
    if not args.input_channel.strip():
        raise UsageError("--input-channel is empty")
    if args.access_security_file:
        check_file(args.access_security_file)


def stage_config(
    args: argparse.Namespace, kind: str, stage_id: int, n_consumers: int, input_channel: str
) -> StageConfig:
    """Build the validated configuration of one stage from parsed options."""
    spec = args.id_format_spec

    def chan(template, role):
        return channel_name(template, kind, role, stage_id, spec)

    oid_offset = args.oid_offset
    if oid_offset <= 0 and "objectIdOffset" in args.processor_args:
        try:
            oid_offset = int(args.processor_args["objectIdOffset"])
        except (TypeError, ValueError):
            raise UsageError(
                "--processor-args: objectIdOffset must be an integer, got "
                f"{args.processor_args['objectIdOffset']!r}"
            ) from None
    return StageConfig(
        kind=kind,
        stage_id=stage_id,
        input_channel=input_channel,
        output_channel=chan(args.output_channel, "output"),
        status_channel=chan(args.status_channel, "status"),
        control_channel=chan(args.control_channel, "control"),
        server_queue_size=args.server_queue_size,
        receiver_queue_size=args.receiver_queue_size,
        accumulate_objects=args.accumulate_objects,
        accumulation_timeout=args.accumulation_timeout,
        processor_file=args.processor_file,
        processor_class=args.processor_class,
        processor_args=args.processor_args,
        oid_field=args.oid_field,
        oid_offset=oid_offset,
        field_request=args.field_request,
        skip_initial_updates=args.skip_initial_updates,
        distributor_plugin=args.distributor_plugin_name,
        distributor_group=args.distributor_group,
        distributor_set=args.distributor_set,
        distributor_trigger=args.distributor_trigger,
        distributor_updates=args.distributor_updates,
        n_distributor_sets=args.n_distributor_sets,
        n_consumers=n_consumers,
        metadata_channels=parse_channel_list(args.metadata_channels, "--metadata-channels"),
        runtime=args.runtime,
        report_period=args.report_period,
        report_stats=tuple(s.strip() for s in args.report_stats.split(",") if s.strip()),
        report_format=args.report_format,
        restart_failed=args.restart_failed,
        access_security_file=args.access_security_file,
    )
