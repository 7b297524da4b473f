"""``pvapy-hpc-consumer``'s options (SPEC §3.1) and the consumer configurations they make."""

from __future__ import annotations

import argparse

from ..errors import UsageError
from ..ids import format_id, parse_id_list
from ..runtime.config import StageConfig
from .common import Parser
from .stage import stage_config, stage_parser, validate

__all__ = ["PROG", "build_parser", "consumer_ids", "consumer_configs"]

PROG = "pvapy-hpc-consumer"


def build_parser(prog: str = PROG) -> Parser:
    """The command's option parser."""
    p = stage_parser(
        "consumer",
        prog,
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
    return p  # type: ignore[return-value]


def consumer_ids(args: argparse.Namespace) -> list[int]:
    """The consumer ids the options ask for (``-cid``, else ``-id``..``-id+nc-1``)."""
    if args.n_consumers < 1:
        raise UsageError(f"--n-consumers must be >= 1, got {args.n_consumers}")
    if args.consumer_id_list:
        return parse_id_list(args.consumer_id_list, "--consumer-id-list")
    return list(range(args.consumer_id, args.consumer_id + args.n_consumers))


def consumer_configs(args: argparse.Namespace) -> list[StageConfig]:
    """One checked configuration per consumer; raises UsageError on a mistake."""
    validate(args)
    ids = consumer_ids(args)
    return [
        stage_config(
            args,
            "consumer",
            i,
            len(ids),
            args.input_channel.replace("*", format_id(i, args.id_format_spec)),
        )
        for i in ids
    ]
