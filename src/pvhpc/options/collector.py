"""``pvapy-hpc-collector``'s options (SPEC §3.2) and the collector configuration they make."""

from __future__ import annotations

import argparse

from ..errors import UsageError
from ..ids import format_id, parse_id_list
from ..runtime.config import StageConfig
from .common import Parser, number
from .stage import stage_config, stage_parser, validate

__all__ = ["PROG", "build_parser", "producer_channels", "collector_config"]

PROG = "pvapy-hpc-collector"

_seconds = number(float, lambda v: 0 <= v < float("inf"), "a non-negative number of seconds")


def build_parser(prog: str = PROG) -> Parser:
    """The command's option parser."""
    p = stage_parser(
        "collector",
        prog,
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
    p.add_argument(
        "-cgt",
        "--collector-gap-timeout",
        type=_seconds,
        default=0.0,
        help="seconds a producer may send nothing while the others do before the "
        "cache stops waiting for it (its ids count as missed); for a large "
        "--collector-cache-size; 0: wait as the cache size allows [0]",
    )
    return p  # type: ignore[return-value]


def producer_channels(args: argparse.Namespace) -> tuple[list[int], list[str]]:
    """The producer ids and each one's input channel (``*`` replaced by its id)."""
    producers = parse_id_list(args.producer_id_list, "--producer-id-list")
    if "*" not in args.input_channel and len(producers) > 1:
        raise UsageError(
            f"--input-channel {args.input_channel!r} has no '*' to replace by each "
            f"of the {len(producers)} producer ids"
        )
    channels = [
        args.input_channel.replace("*", format_id(p, args.id_format_spec)) for p in producers
    ]
    return producers, channels


def collector_config(args: argparse.Namespace) -> tuple[StageConfig, list[int], list[str]]:
    """The checked configuration, producer ids and input channels; UsageError if wrong."""
    validate(args)
    producers, channels = producer_channels(args)
    config = stage_config(args, "collector", args.collector_id, 1, ",".join(channels))
    return config, producers, channels
