"""``pvapy-hpc-consumer`` / ``pvhpc consumer``: receive, process and republish a stream."""

from __future__ import annotations

from collections.abc import Sequence

from ..consumer import Consumer
from ..errors import UsageError
from ..ids import format_id, parse_id_list
from ..launcher import run_group, run_single
from ..loading import create_processor, load_processor_class
from .common import entry_point, run_main
from .stage_options import stage_config, stage_parser, validate

__all__ = ["main"]

PROG = "pvapy-hpc-consumer"


def build_parser():
    p = stage_parser(
        "consumer",
        PROG,
        "Receive objects from a PVA channel, process them with a "
        "processor class and publish the results, with status and control channels.",
    )
    p.add_argument("-id", "--consumer-id", type=int, default=1, help="first consumer id [1]")
    p.add_argument(
        "-nc",
        "--n-consumers",
        type=int,
        default=1,
        help="number of consumer processes, ids id..id+n-1 [1]",
    )
    p.add_argument(
        "-cid",
        "--consumer-id-list",
        help="consumer ids: 1,2,5 or range(first,last+1[,step]); overrides -id/-nc",
    )
    return p


def _body(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    validate(args)
    if args.n_consumers < 1:
        raise UsageError(f"--n-consumers must be >= 1, got {args.n_consumers}")
    if args.consumer_id_list:
        ids = parse_id_list(args.consumer_id_list, "--consumer-id-list")
    else:
        ids = list(range(args.consumer_id, args.consumer_id + args.n_consumers))
    n = len(ids)

    def config(i):
        channel = args.input_channel.replace("*", format_id(i, args.id_format_spec))
        return stage_config(args, "consumer", i, n, channel)

    configs = [config(i) for i in ids]
    if n == 1:
        return run_single(configs[0], Consumer)
    # Build the processor once here, so a mistake in its class or arguments is one
    # line before any consumer process starts.
    create_processor(
        load_processor_class(args.processor_file, args.processor_class), args.processor_args
    )
    return run_group(configs, Consumer, args.log_level, args.log_file)


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(PROG, _body, argv)


# The console script (pyproject.toml) and ``python -m``.
entry = entry_point(main)

if __name__ == "__main__":
    entry()
