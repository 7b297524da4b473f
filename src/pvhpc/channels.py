"""The channels a stage hosts on its own PvaServer: output, status and control (SPEC §4).

:class:`StageServer` owns the server. The output channel is created at start with a
blank object of the processor's output type, so that a next stage can connect
before the first frame; :class:`DataPublisher` updates it. The status channel is a
structure built once from the first statistics snapshot. Commands written to the
control channel are handed to a callback in a separate thread, so the put returns
at once; the answer appears in ``statusMessage``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import pvaccess as pva

__all__ = ["StageServer", "DataPublisher", "pva_structure", "blank_like"]

_TIMESTAMP = {"secondsPastEpoch": pva.LONG, "nanoseconds": pva.INT, "userTag": pva.INT}


def _pva_type(value: Any) -> Any:
    if isinstance(value, bool):
        return pva.BOOLEAN
    if isinstance(value, int):
        return pva.LONG
    if isinstance(value, float):
        return pva.DOUBLE
    if isinstance(value, dict):
        return pva_structure(value)
    return pva.STRING


def pva_structure(sample: dict, types: dict | None = None) -> dict:
    """A PVA structure dict for a nested dict of values (ints → LONG, floats → DOUBLE)."""
    types = types or {}
    out = {}
    for key, value in sample.items():
        ftype = types.get(key) or _pva_type(value)
        # PVA has no empty structures: a stage without metadata channels or user
        # statistics simply has no such sub-structure.
        if not (isinstance(ftype, dict) and not ftype):
            out[key] = ftype
    return out


def conform(value: dict, structure: dict) -> dict:
    """Keep only the keys of ``structure`` and coerce values to its scalar types."""
    out = {}
    for key, ftype in structure.items():
        if key not in value:
            continue
        v = value[key]
        if isinstance(ftype, dict):
            out[key] = conform(v if isinstance(v, dict) else {}, ftype)
        elif ftype in (pva.DOUBLE, pva.FLOAT):
            out[key] = float(v) if v is not None else 0.0
        elif ftype == pva.STRING:
            out[key] = "" if v is None else str(v)
        elif ftype == pva.BOOLEAN:
            out[key] = bool(v)
        else:
            try:
                out[key] = int(v) if v is not None else 0
            except (TypeError, ValueError):
                out[key] = 0
    return out


def blank_like(pv: Any) -> Any:
    """An object of ``pv``'s structure holding default values (no frame data)."""
    if isinstance(pv, pva.NtNdArray):
        return pva.NtNdArray()
    cls = type(pv)
    if cls is not pva.PvObject:
        try:
            return cls()
        except Exception:  # noqa: BLE001 - fall back to the generic structure copy
            pass
    return pva.PvObject(pv.getStructureDict())


def _timestamp_now() -> Any:
    return pva.PvTimeStamp(time.time())


class DataPublisher:
    """Publishes processed objects on the output channel; the processor's ``dataPublisher``.

    ``updateOutputChannel`` is called from the processing thread (the hot path): it
    is one server update and two counter increments.
    """

    def __init__(self, server: StageServer | None, channel: str | None, logger: logging.Logger):
        self.server = server
        self.channel = channel
        self.logger = logger
        self.n_published = 0
        self.n_errors = 0
        self._update = None
        self._checked = False

    def create(self, type_object: Any) -> None:
        """Create the output record with a blank object of ``type_object``'s structure."""
        if self.server is None or not self.channel:
            return
        self.server.add_record(self.channel, blank_like(type_object))
        self._update = self.server.pva_server.update

    def updateOutputChannel(self, pvObject: Any) -> None:  # noqa: N802 - processor API name
        update = self._update
        if update is None:
            if self.server is None or not self.channel:
                return
            self.create(pvObject)
            update = self._update
        try:
            update(self.channel, pvObject)
            self.n_published += 1
        except (pva.PvaException, ValueError) as exc:
            if not self._checked:
                # First object of a structure the record was not made for: remake it
                # from the object itself, which keeps its type ids.
                self._checked = True
                self.logger.info(
                    "output channel %s: re-creating it for objects of the "
                    "structure the processor publishes (%s)",
                    self.channel,
                    exc,
                )
                self.server.remove_record(self.channel)
                self.server.add_record(self.channel, pvObject.copy())
                self._update = self.server.pva_server.update
                self.updateOutputChannel(pvObject)
                return
            self.n_errors += 1
            self.logger.error("cannot publish on %s: %s", self.channel, exc)

    def reset_stats(self) -> None:
        self.n_published = self.n_errors = 0


class StageServer:
    """The PvaServer of one consumer or collector, with its status and control records.

    ``on_command(command, args)`` is called in the control thread for every put on
    the control channel and returns the status message to publish.
    """

    def __init__(self, id_name: str, stage_id: int, logger: logging.Logger):
        self.id_name = id_name
        self.stage_id = stage_id
        self.logger = logger
        self.pva_server = pva.PvaServer()
        self.status_channel: str | None = None
        self.control_channel: str | None = None
        self._status_type: dict | None = None
        self._status_counter = 0
        self._commands: queue.Queue = queue.Queue()
        self._on_command: Callable[[str, str], str] | None = None
        self._control_thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def add_record(self, name: str, pv: Any, on_write: Callable | None = None) -> None:
        with self._lock:
            if on_write is None:
                self.pva_server.addRecord(name, pv)
            else:
                self.pva_server.addRecord(name, pv, on_write)

    def remove_record(self, name: str) -> None:
        with self._lock:
            if self.pva_server.hasRecord(name):
                self.pva_server.removeRecord(name)

    def setup_status(self, channel: str | None, sample: dict, types: dict | None = None) -> None:
        """Create the status record, its structure fixed by ``sample``."""
        if not channel:
            return
        self.status_channel = channel
        structure = {
            self.id_name: pva.UINT,
            "objectId": pva.ULONG,
            "objectTime": pva.DOUBLE,
            "objectTimestamp": _TIMESTAMP,
        }
        structure.update(pva_structure(sample, types))
        self._status_type = structure
        self.add_record(channel, pva.PvObject(structure, {self.id_name: self.stage_id}))

    def publish_status(self, stats: dict) -> None:
        """Update the status record with a statistics snapshot (any thread)."""
        if not self.status_channel or self._status_type is None:
            return
        self._status_counter += 1
        now = time.time()
        value = conform(stats, self._status_type)
        value.update(
            {
                self.id_name: self.stage_id,
                "objectId": self._status_counter,
                "objectTime": now,
                "objectTimestamp": _split_time(now),
            }
        )
        try:
            self.pva_server.update(self.status_channel, pva.PvObject(self._status_type, value))
        except pva.PvaException as exc:
            self.logger.error("cannot update status channel %s: %s", self.status_channel, exc)

    def setup_control(self, channel: str | None, on_command: Callable[[str, str], str]) -> None:
        """Create the control record and start the thread that runs commands."""
        if not channel:
            return
        self.control_channel = channel
        self._on_command = on_command
        self._control_type = {
            self.id_name: pva.UINT,
            "objectTime": pva.DOUBLE,
            "objectTimestamp": _TIMESTAMP,
            "command": pva.STRING,
            "args": pva.STRING,
            "statusMessage": pva.STRING,
        }
        self.add_record(
            channel,
            pva.PvObject(self._control_type, {self.id_name: self.stage_id}),
            self._on_control_write,
        )
        self._control_thread = threading.Thread(
            target=self._control_loop, name="control", daemon=True
        )
        self._control_thread.start()

    def _on_control_write(self, pv: Any) -> None:
        # Runs in the server's thread: hand over and return, so the put completes.
        try:
            self._commands.put((pv["command"], pv["args"]))
        except Exception as exc:  # noqa: BLE001 - malformed put; answer in the loop
            self._commands.put(("", f"<unreadable put: {exc}>"))

    def _control_loop(self) -> None:
        while True:
            item = self._commands.get()
            if item is None:
                return
            command, args = item
            try:
                message = self._on_command(command, args) if self._on_command else ""
            except Exception as exc:  # noqa: BLE001 - a command must never kill the stage
                self.logger.exception("control command %r failed", command)
                message = f"Command {command!r} failed: {type(exc).__name__}: {exc}"
            self.answer(command, args, message)

    def answer(self, command: str, args: str, message: str) -> None:
        """Publish the outcome of a command in the control record's ``statusMessage``."""
        if not self.control_channel:
            return
        now = time.time()
        value = {
            self.id_name: self.stage_id,
            "objectTime": now,
            "objectTimestamp": _split_time(now),
            "command": command or "",
            "args": args or "",
            "statusMessage": message,
        }
        try:
            self.pva_server.update(self.control_channel, pva.PvObject(self._control_type, value))
        except pva.PvaException as exc:
            self.logger.error("cannot update control channel %s: %s", self.control_channel, exc)

    def stop(self) -> None:
        if self._control_thread is not None:
            self._commands.put(None)
            self._control_thread.join(5)
        try:
            self.pva_server.stop()
        except pva.PvaException:
            pass


def _split_time(t: float) -> dict:
    seconds = int(t)
    return {"secondsPastEpoch": seconds, "nanoseconds": int((t - seconds) * 1e9), "userTag": 0}
