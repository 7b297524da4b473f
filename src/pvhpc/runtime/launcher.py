"""Running one stage in this process, or several as supervised child processes.

With ``-nc > 1`` (or ``-cid``) each consumer runs in its own process (spawned, so
each has its own pvaccess context and PVA server), supervised by the parent
(:class:`~pvhpc.runtime.supervisor.Supervisor`): it forwards stop requests, prints
one combined report per period, reports a child that dies (and starts it again with
``--restart-failed``), accounts for the frames a dead child took with it, and exits
non-zero if any child failed.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import NoReturn

from ..errors import ProcessorError
from ..loading import create_processor, load_processor_class
from ..log import configure_logging
from .config import StageConfig
from .report import print_report
from .stage import Stage
from .supervisor import RESTART_STATUS, Supervisor, worth_showing

__all__ = ["run_single", "run_group", "exit_process", "RESTART_STATUS"]

logger = logging.getLogger("pvhpc.launcher")

StageFactory = Callable[[StageConfig, object], Stage]


def _install_stop_handlers(stop: Callable[[str], None]) -> None:
    def handler(signum, _frame):
        stop(f"signal {signal.Signals(signum).name}")

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def exit_process(status: int) -> NoReturn:
    """End this process with ``status`` without finalizing the interpreter.

    pvaccess threads go on running while Python shuts down, and one that calls into
    Python then (a producer or source going away at the same moment is enough) is
    ended by the interpreter with a forced unwind that pvaccess's C++ code swallows:
    the process aborts. Measured: 9 of 29 collectors stopped together with their
    producers ended with SIGABRT instead of status 0. Everything a stage writes is
    flushed and closed when its processor stops, before this; here the ``atexit``
    handlers (logging's among them) run and the standard streams are flushed, then
    the process ends at once.
    """
    try:
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # closed or gone: nothing more to say
                pass
        os._exit(status)


def run_single(config: StageConfig, factory: StageFactory, print_reports: bool = True) -> int:
    """Run one stage in this process until stopped; returns its exit status."""
    cls = load_processor_class(config.processor_file, config.processor_class)
    processor = create_processor(cls, config.processor_args)
    stage = factory(config, processor)
    if print_reports:

        def sink(snapshot: dict) -> None:
            if snapshot.get("final") and not worth_showing([snapshot], stage.fatal_error, config):
                return
            if snapshot.get("final") or config.report_period > 0:
                print_report(
                    [snapshot],
                    config.kind,
                    config.report_format,
                    final=bool(snapshot.get("final")),
                    sections=config.report_stats,
                )

        stage.report_sink = sink
    _install_stop_handlers(stage.request_stop)
    try:
        status = stage.run()
    except Exception as exc:  # noqa: BLE001 - e.g. processor start() failed
        logger.debug("stage failed", exc_info=True)
        logging.getLogger("pvhpc").error(
            "%s %s failed: %s", config.kind, config.stage_id, _describe(exc)
        )
        return 1
    if stage.fatal_error:
        sys.stderr.write(f"{_prog(config)}: error: {stage.fatal_error}\n")
    return status


def _prog(config: StageConfig) -> str:
    """The command's name in error lines (that of its console script)."""
    return f"pvapy-hpc-{config.kind}"


def _describe(exc: Exception) -> str:
    """One line for a stage that failed: a ProcessorError's message says it all."""
    if isinstance(exc, ProcessorError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _child_main(
    config: StageConfig,
    factory: StageFactory,
    stop_conn,
    report_conn,
    log_level: str | None,
    log_file: str | None,
) -> None:
    """Entry point of a child process (spawned).

    ``stop_conn`` (read end) delivers the parent's stop request, or EOF if the
    parent died; ``report_conn`` (write end) carries this child's snapshots. Each
    child has pipes of its own: a child killed while using one (SIGKILL, OOM)
    cannot leave a lock held that its siblings or the parent would wait on, as a
    queue or event shared by all children can.
    """
    configure_logging(log_level, log_file)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    try:
        cls = load_processor_class(config.processor_file, config.processor_class)
        processor = create_processor(cls, config.processor_args)
        stage = factory(config, processor)
    except Exception as exc:  # noqa: BLE001
        sys.stderr.write(f"{config.kind} {config.stage_id}: error: {exc}\n")
        exit_process(2)

    def send_report(snapshot: dict) -> None:
        try:
            report_conn.send(snapshot)
        except (OSError, ValueError):  # the parent is gone: nobody to report to
            pass

    stage.report_sink = send_report
    stage.track_progress(send_report)
    # The parent prints it, once for all children that say the same.
    stage.fatal_sink = lambda message: send_report(
        {f"{config.kind}Id": config.stage_id, "fatal": message}
    )

    signal.signal(signal.SIGTERM, lambda *_: stage.request_stop("signal SIGTERM"))

    def watch_parent():
        try:
            stop_conn.recv()
            reason = "stopped by the parent process"
        except (EOFError, OSError):
            reason = "the parent process is gone"
        stage.request_stop(reason)

    threading.Thread(target=watch_parent, daemon=True).start()
    try:
        status = stage.run()
    except Exception as exc:  # noqa: BLE001
        sys.stderr.write(f"{config.kind} {config.stage_id}: error: {_describe(exc)}\n")
        status = 1
    if status == 0 and getattr(stage, "restart_requested", False):
        status = RESTART_STATUS  # the parent starts this stage again at once
    exit_process(status)


def run_group(
    configs: list[StageConfig], factory: StageFactory, log_level: str | None, log_file: str | None
) -> int:
    """Run each config in its own child process, supervised (see
    :class:`~pvhpc.runtime.supervisor.Supervisor`); return the exit status."""
    # Check the processor in the parent, so a mistake is one line before any spawn.
    load_processor_class(configs[0].processor_file, configs[0].processor_class)
    supervisor = Supervisor(configs, factory, _child_main, log_level, log_file, _prog(configs[0]))
    _install_stop_handlers(supervisor.stop)
    return supervisor.run()
