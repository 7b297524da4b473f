"""``pvapy-hpc-collector`` / ``pvhpc collector``: gather producers' streams, sort, process."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from ..collector import Collector
from ..errors import UsageError
from ..ids import format_id, parse_id_list
from ..launcher import run_single
from ..loading import load_processor_class
from .common import entry_point, run_main
from .stage_options import stage_config, stage_parser, validate

__all__ = ["main"]

PROG = "pvapy-hpc-collector"


def build_parser():
    p = stage_parser(
        "collector",
        PROG,
        "Gather the output channels of several producers, "
        "release their objects sorted by object id, process and publish them.",
    )
    p.add_argument("-id", "--collector-id", type=int, default=1, help="collector id [1]")
    p.add_argument(
        "-pid",
        "--producer-id-list",
        default="1,2",
        help="producer ids: 1,2,3 or range(first,last+1[,step]) [1,2]",
    )
    p.add_argument(
        "-ccs",
        "--collector-cache-size",
        type=int,
        default=-1,
        help="objects held for sorting before the lowest ids are released "
        "(at least the number of producers) [-1]",
    )
    return p


def _body(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    validate(args)
    producers = parse_id_list(args.producer_id_list, "--producer-id-list")
    if "*" not in args.input_channel and len(producers) > 1:
        raise UsageError(
            f"--input-channel {args.input_channel!r} has no '*' to replace by each "
            f"of the {len(producers)} producer ids"
        )
    channels = [
        args.input_channel.replace("*", format_id(p, args.id_format_spec)) for p in producers
    ]
    config = stage_config(args, "collector", args.collector_id, 1, ",".join(channels))
    load_processor_class(args.processor_file, args.processor_class)
    factory = partial(
        _make_collector,
        producers=producers,
        channels=channels,
        cache_size=args.collector_cache_size,
    )
    return run_single(config, factory)


def _make_collector(config, processor, producers, channels, cache_size):
    return Collector(config, processor, producers, channels, cache_size)


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(PROG, _body, argv)


# The console script (pyproject.toml) and ``python -m``.
entry = entry_point(main)

if __name__ == "__main__":
    entry()
