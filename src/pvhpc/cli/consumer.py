"""``pvapy-hpc-consumer`` / ``pvhpc consumer``: receive, process and republish a stream.

From Python, build a :class:`pvhpc.runtime.consumer.Consumer` instead (its options
as :func:`pvhpc.options.consumer.consumer_configs` makes them).
"""

from __future__ import annotations

from collections.abc import Sequence

from ..loading import create_processor, load_processor_class
from ..log import configure_logging
from ..options.consumer import PROG, build_parser, consumer_configs
from ..runtime.consumer import Consumer
from ..runtime.launcher import run_group, run_single
from .common import entry_point, run_main

__all__ = ["main"]


def _body(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    configs = consumer_configs(args)
    configure_logging(args.log_level, args.log_file)
    if len(configs) == 1 and not configs[0].restart_failed:
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
