"""``pvhpc record``'s runtime: a consumer running :class:`~pvhpc.processors.StreamRecorder`,
with the ``dump`` control command, a stop when the recording ends (a limit, a full
disk), progress lines and a final line with the loss invariant.

:func:`run_recording` runs it in this process until the runtime is over, a limit is
reached, SIGINT/SIGTERM, or a ``stop`` command; it returns the exit status: 0, or 1
when the recording ended by an error (a full disk, a file that cannot be written).
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

from ..processor import adapt_processor
from ..processors.recorder import StreamRecorder
from ..runtime.config import StageConfig
from ..runtime.consumer import Consumer
from ..workflow.accounting import accounted, stage_counts

__all__ = ["RecordingConsumer", "final_lines", "progress_line", "run_recording"]

logger = logging.getLogger("pvhpc.record")


class RecordingConsumer(Consumer):
    """A consumer whose processor is a StreamRecorder: adds the ``dump`` command and
    stops once the recorder has ended its recording."""

    def handle_command(self, command: str, args: str) -> str:
        if (command or "").strip() == "dump":
            return self.processor.dump("dump command")
        return super().handle_command(command, args)

    def on_tick(self) -> None:
        super().on_tick()
        reason = self.processor.finished
        if reason and not self.stop_event.is_set():
            if self.processor.failed:
                self.exit_status = 1
            self.request_stop(reason)


def _mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


def progress_line(snapshot: dict, rate: float) -> str:
    """One progress line from a status snapshot: frames, MB/s (``rate``, bytes/s over
    the last period), missed; the ring's fill for a flight recorder."""
    user = snapshot.get("userStats") or {}
    proc = snapshot["processorStats"]
    missed = proc["nMissed"]
    rejected = snapshot["receiverStats"]["nRejected"]
    where = user.get("currentFile") or "(no file yet)"
    if user.get("ringFrames") is not None and (user.get("nDumps") or user.get("ringFrames")):
        text = (
            f"ring: {user['ringFrames']} frames ({user.get('ringSeconds', 0.0):.1f} s) in "
            f"memory, {user.get('nDumps', 0)} dump(s), {user.get('nDumped', 0)} frames dumped"
        )
        if user.get("nRingEvicted"):
            text += f" (memory limit: {user['nRingEvicted']} frames left early)"
    else:
        text = f"{where}: {user.get('nRecorded', 0)} frames, {_mb(user.get('storedBytes', 0))}"
    text += f", {rate / 1e6:.1f} MB/s, {missed} missed"
    if rejected:
        text += f", {rejected} rejected"
    if user.get("nNotRecorded"):
        text += f", {user['nNotRecorded']} not recorded"
    return text


def final_lines(snapshot: dict, elapsed: float) -> list[str]:
    """What the recording did, and the loss invariant over every frame received:
    frames = recorded + not recorded + missed + rejected + errors."""
    user = snapshot.get("userStats") or {}
    proc = snapshot["processorStats"]
    counts = stage_counts(snapshot)
    total = accounted(counts)
    files = int(user.get("nFiles", 0))
    stored = int(user.get("storedBytes", 0))
    recorded = int(user.get("nRecorded", 0)) or int(user.get("nDumped", 0))
    if user.get("nDumps"):
        head = f"flight recorder: {user['nDumps']} dump(s), {user.get('nDumped', 0)} frames"
    else:
        head = f"recorded {recorded} frames"
    where = user.get("currentFile") or ""
    head += f" ({_mb(stored)}) into {files} file(s)" + (f", last {where}" if where else "")
    if elapsed > 0:
        head += f" in {elapsed:.1f} s ({stored / elapsed / 1e6:.1f} MB/s)"
    if user.get("finished"):
        head += f"; {user['finished']}"
    not_recorded = counts["processed"] - int(user.get("nRecorded", 0))
    kept = "in the ring" if user.get("nDumps") or user.get("ringFrames") else "not recorded"
    parts = (
        f"{int(user.get('nRecorded', 0))} recorded + {not_recorded} {kept} + "
        f"{counts['missed']} missed + {counts['rejected']} rejected + {counts['errors']} errors"
    )
    if counts["skipped"]:
        parts += f" + {counts['skipped']} skipped"
    first, last = proc.get("firstObjectId", -1), proc.get("sourceLastId", -1)
    if last < 0:
        last = proc.get("lastObjectId", -1)
    if first is not None and first >= 0 and last >= first:
        published = last - first + 1
        verdict = (
            "every frame accounted for"
            if published == total
            else (f"{published - total:+d} frame(s) UNACCOUNTED FOR")
        )
        check = f"loss check: ids {first}-{last}: {published} = {parts}: {verdict}"
    else:
        check = f"loss check: {total} frames = {parts}"
    return [head, check]


def run_recording(
    config: StageConfig,
    processor_args: dict,
    report_format: str = "text",
    out: Callable[[str], None] | None = None,
) -> int:
    """Record until stopped (blocks; installs SIGINT/SIGTERM handlers); returns the
    exit status. Raises UsageError for a bad output file or recorder setting."""
    write = out or _print
    processor = adapt_processor(StreamRecorder(processor_args))
    stage = RecordingConsumer(config, processor)
    start = time.monotonic()
    last = {"t": start, "bytes": 0}

    def sink(snapshot: dict) -> None:
        if report_format == "json":
            write(json.dumps(snapshot, default=str))
        now = time.monotonic()
        stored = int((snapshot.get("userStats") or {}).get("storedBytes", 0))
        if snapshot.get("final"):
            # Also after the JSON object: the summary is for the person at the terminal.
            for line in final_lines(snapshot, now - start):
                write(line)
            return
        interval = now - last["t"]
        rate = (stored - last["bytes"]) / interval if interval > 0 else 0.0
        last["t"], last["bytes"] = now, stored
        if report_format != "json":
            write(progress_line(snapshot, rate))

    stage.report_sink = sink

    def on_signal(signum: int, _frame: Any) -> None:
        stage.request_stop(f"signal {signal.Signals(signum).name}")

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        status = stage.run()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if processor.failed:
        sys.stderr.write(f"pvhpc record: error: {processor.finished}\n")
        status = status or 1
    elif stage.fatal_error:
        sys.stderr.write(f"pvhpc record: error: {stage.fatal_error}\n")
    return status


def _print(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
