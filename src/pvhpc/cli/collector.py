"""``pvapy-hpc-collector`` / ``pvhpc collector``: gather producers' streams, sort, process.

From Python, build a :class:`pvhpc.runtime.collector.Collector` instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from ..loading import load_processor_class
from ..log import configure_logging
from ..options.collector import PROG, build_parser, collector_config
from ..runtime.collector import Collector
from ..runtime.launcher import run_group, run_single
from .common import entry_point, run_main

__all__ = ["main"]


def _body(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    config, producers, channels = collector_config(args)
    configure_logging(args.log_level, args.log_file)
    load_processor_class(args.processor_file, args.processor_class)
    factory = partial(
        Collector,
        producer_ids=producers,
        input_channels=channels,
        cache_size=args.collector_cache_size,
        gap_timeout=args.collector_gap_timeout,
    )
    if config.restart_failed:  # a supervising parent starts it again if it dies
        return run_group([config], factory, args.log_level, args.log_file)
    return run_single(config, factory)


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(PROG, _body, argv)


# The console script (pyproject.toml) and ``python -m``.
entry = entry_point(main)

if __name__ == "__main__":
    entry()
