"""Running one stage in this process, or several as supervised child processes.

With ``-nc > 1`` (or ``-cid``) each consumer runs in its own process (spawned, so
each has its own pvaccess context and PVA server). The parent forwards stop
requests, prints one combined report per period from the children's snapshots,
reports a child that dies, and exits non-zero if any child failed.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing as mp
import multiprocessing.connection as mp_connection
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import NoReturn

from ..errors import ProcessorError
from ..loading import create_processor, load_processor_class
from ..log import configure_logging
from .config import StageConfig
from .report import print_report
from .stage import Stage

__all__ = ["run_single", "run_group", "exit_process"]

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
            if snapshot.get("final") and not _worth_showing([snapshot], stage.fatal_error, config):
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


def _worth_showing(snapshots: list[dict], fatal: object, config: StageConfig) -> bool:
    """A final table of zeros adds nothing to the one error line of a stage that
    could not work at all; JSON reports are always given (programs read them)."""
    if not fatal or config.report_format == "json":
        return True
    return any(s.get("receiverStats", {}).get("nReceived") for s in snapshots)


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
    exit_process(status)


def run_group(
    configs: list[StageConfig], factory: StageFactory, log_level: str | None, log_file: str | None
) -> int:
    """Run each config in its own child process; supervise; return the exit status."""
    # Check the processor in the parent, so a mistake is one line before any spawn.
    load_processor_class(configs[0].processor_file, configs[0].processor_class)
    ctx = mp.get_context("spawn")
    kind = configs[0].kind
    id_name = f"{kind}Id"
    children = {}
    stop_conns = {}
    readers: dict = {}  # report pipe (read end) -> stage id, while the child may write
    for cfg in configs:
        stop_r, stop_w = ctx.Pipe(duplex=False)
        report_r, report_w = ctx.Pipe(duplex=False)
        p = ctx.Process(
            target=_child_main,
            name=f"{kind}-{cfg.stage_id}",
            args=(cfg, factory, stop_r, report_w, log_level, log_file),
        )
        p.start()
        # The child has its own copies: closing ours lets EOF tell us it is gone.
        stop_r.close()
        report_w.close()
        children[cfg.stage_id] = p
        stop_conns[cfg.stage_id] = stop_w
        readers[report_r] = cfg.stage_id
    stopping = {"reason": ""}

    def stop(reason: str) -> None:
        if not stopping["reason"]:
            stopping["reason"] = reason
            logger.info("stopping all %ss: %s", kind, reason)
        for conn in stop_conns.values():
            try:
                conn.send("stop")
            except (OSError, ValueError):  # that child is gone already
                pass

    _install_stop_handlers(stop)
    cfg0 = configs[0]
    latest: dict[int, dict] = {}
    finals: dict[int, dict] = {}
    failed: dict[int, str] = {}
    fatal: dict[str, list[int]] = {}  # one line -> the children that said it
    period = cfg0.report_period if cfg0.report_period > 0 else None
    next_report = time.monotonic() + period if period else None
    deadline = time.monotonic() + cfg0.runtime + 30 if cfg0.runtime > 0 else None

    def collect(timeout: float) -> None:
        if not readers:
            time.sleep(timeout)
            return
        for conn in mp_connection.wait(list(readers), timeout):
            try:
                snap = conn.recv()
            except (EOFError, OSError):  # the child exited (or died)
                readers.pop(conn, None)
                conn.close()
                continue
            sid = snap.get(id_name)
            if "fatal" in snap:
                fatal.setdefault(snap["fatal"], []).append(sid)
                continue
            latest[sid] = snap
            if snap.get("final"):
                finals[sid] = snap

    while True:
        collect(0.2)
        for sid, p in children.items():
            if p.exitcode is not None and p.exitcode != 0 and sid not in failed:
                if any(sid in ids for ids in fatal.values()):
                    failed[sid] = "stopped: see the error below"
                    continue
                how = (
                    f"killed by signal {-p.exitcode}"
                    if p.exitcode < 0
                    else f"exit status {p.exitcode}"
                )
                failed[sid] = how
                logging.getLogger("pvhpc").error(
                    "%s %s ended unexpectedly (%s); the others go on", kind, sid, how
                )
        alive = [p for p in children.values() if p.exitcode is None]
        if not alive:
            break
        now = time.monotonic()
        if next_report is not None and now >= next_report and latest:
            next_report += period
            print_report(
                [latest[k] for k in sorted(latest)],
                kind,
                cfg0.report_format,
                sections=cfg0.report_stats,
            )
        if deadline is not None and now > deadline:
            stop("runtime exceeded; stopping children that did not stop by themselves")
            deadline = None
    # Children have exited: collect every snapshot still in the pipes (until EOF).
    end = time.monotonic() + 5
    while readers and time.monotonic() < end:
        collect(0.2)
    for p in children.values():
        p.join()
    shown = [finals.get(k) or latest[k] for k in sorted(latest)]
    if shown and _worth_showing(shown, bool(fatal), cfg0):
        print_report(shown, kind, cfg0.report_format, final=True, sections=cfg0.report_stats)
    for message in fatal:
        sys.stderr.write(f"{_prog(cfg0)}: error: {message}\n")
    if fatal and all(sid in (i for ids in fatal.values() for i in ids) for sid in children):
        return 2
    if failed:
        print(
            f"{len(failed)} of {len(children)} {kind}s failed: "
            + ", ".join(f"{kind} {k} ({v})" for k, v in sorted(failed.items()))
        )
        # Every child refusing its configuration is a user mistake: status 2, as for one.
        usage = len(failed) == len(children) and all(children[k].exitcode == 2 for k in failed)
        return 2 if usage else 1
    return 0
