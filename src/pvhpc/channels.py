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
import numbers
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pvaccess as pva

from .access_security import CONTROL_GROUP, CONTROL_LEVEL, init_access_security, protected_message

__all__ = ["StageServer", "DataPublisher", "pva_structure", "pva_type_for"]

_TIMESTAMP = {"secondsPastEpoch": pva.LONG, "nanoseconds": pva.INT, "userTag": pva.INT}


def pva_type_for(value: Any) -> Any:
    """The PVA type a statistics value is published as: integers LONG, other real
    numbers DOUBLE (float subclasses and numpy scalars too), dicts a structure,
    anything else STRING."""
    if isinstance(value, bool):
        return pva.BOOLEAN
    if isinstance(value, numbers.Integral):
        return pva.LONG
    if isinstance(value, numbers.Real):
        return pva.DOUBLE
    if isinstance(value, dict):
        return pva_structure(value)
    return pva.STRING


def pva_structure(sample: dict, types: dict | None = None) -> dict:
    """A PVA structure dict for a nested dict of values (ints → LONG, floats → DOUBLE)."""
    types = types or {}
    out = {}
    for key, value in sample.items():
        ftype = types.get(key) or pva_type_for(value)
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


_NTNDARRAY_FIELDS = frozenset(pva.NtNdArray().keys())


def blank_of(pv: Any) -> Any:
    """An object of ``pv``'s structure (type ids included) holding default values: no
    pixels, id 0. An output record starts with one, so that a reader connecting before
    the first frame sees no frame."""
    structure = pv.getStructureDict()
    if _NTNDARRAY_FIELDS <= structure.keys():
        extras = {k: v for k, v in structure.items() if k not in _NTNDARRAY_FIELDS}
        blank = pva.NtNdArray(extras) if extras else pva.NtNdArray()
        if blank.getIntrospectionDict() == pv.getIntrospectionDict():
            return blank
    # Another layout (p4p's NTNDArray has no descriptor or display): a copy keeps its
    # type ids; the frame's own fields are emptied.
    blank = pv.copy()
    empty = {
        "uniqueId": 0,
        "value": ({"ubyteValue": np.empty(0, np.uint8)},),
        "dimension": [],
        "compressedSize": 0,
        "uncompressedSize": 0,
    }
    for name, value in empty.items():
        if name in structure:
            try:
                blank[name] = value
            except Exception:  # noqa: BLE001 - a field of another type: left as it was
                pass
    return blank


class DataPublisher:
    """Publishes processed objects on the output channel; the processor's ``dataPublisher``.

    ``updateOutputChannel`` may be called from any thread (the processing thread, or
    a processor's own worker thread): on the hot path it is one server update and a
    counter increment.

    The record is created with the type the processor declares
    (``getOutputPvObjectType``), extra fields and type ids included, before the first
    frame. An object of another structure is converted to the declared type, field by
    field (slower; said once); only an object that cannot be converted replaces the
    record, once, which makes every reader reconnect (said once, as a warning).
    """

    def __init__(self, server: StageServer | None, channel: str | None, logger: logging.Logger):
        self.server = server
        self.channel = channel
        self.logger = logger
        self.n_published = 0
        self.n_errors = 0
        self.n_converted = 0
        self.n_replaced = 0
        self._update = None
        self._template: Any = None
        self._fields: list[str] = []
        self._said_converted = False
        #: The record's type is a guess (the input's type was not known yet).
        self.guessed = False
        self._last_error_log = 0.0
        self._lock = threading.Lock()

    def create(self, type_object: Any, guessed: bool = False) -> None:
        """Create the output record holding a copy of ``type_object`` (its structure,
        type ids and values). ``guessed``: the type is only a guess of what the
        processor will publish (see :meth:`retype`)."""
        if self.server is None or not self.channel:
            return
        self.guessed = guessed
        record = type_object.copy()
        self.server.add_record(self.channel, record)
        self._template = record.copy()
        self._fields = list(record.keys())
        self._update = self.server.pva_server.update

    def updateOutputChannel(self, pvObject: Any) -> None:  # noqa: N802 - processor API name
        update = self._update
        if update is None:
            if self.server is None or not self.channel or pvObject is None:
                return
            with self._lock:
                if self._update is None:
                    self.create(pvObject)
            update = self._update
        try:
            update(self.channel, pvObject)
            self.n_published += 1
        except (pva.PvaException, ValueError) as exc:
            self._publish_other_structure(pvObject, exc)

    def retype(self, type_object: Any) -> None:
        """Make the record again for ``type_object``'s structure if it differs, once, and
        only while nothing was published on it: a reader that connected already
        reconnects, and misses nothing. Any thread."""
        with self._lock:
            if not self.guessed or self._template is None:
                return
            self.guessed = False
            same = type_object.getIntrospectionDict() == self._template.getIntrospectionDict()
            if same or self.n_published or self.n_errors:
                return
            self.logger.info(
                "output channel %s: made again for the input's structure (fields %s)",
                self.channel,
                ", ".join(sorted(set(type_object.keys()) - set(self._fields))) or "differ",
            )
            self.server.remove_record(self.channel)  # type: ignore[union-attr]
            self.create(blank_of(type_object))

    def _publish_other_structure(self, pvObject: Any, exc: Exception) -> None:
        """An object whose structure is not the record's: convert it, or replace the record."""
        converted = None if self.guessed else self._convert(pvObject)
        if converted is not None:
            try:
                self.server.pva_server.update(self.channel, converted)  # type: ignore[union-attr]
            except (pva.PvaException, ValueError):
                converted = None
            else:
                self.n_published += 1
                self.n_converted += 1
                if not self._said_converted:
                    self._said_converted = True
                    dropped = sorted(set(pvObject.keys()) - set(self._fields))
                    self.logger.warning(
                        "output channel %s: the processor publishes objects of another "
                        "structure than the type it declares (getOutputPvObjectType); each "
                        "is converted to the declared type%s, which costs a copy",
                        self.channel,
                        f" (fields dropped: {', '.join(dropped)})" if dropped else "",
                    )
                return
        with self._lock:
            if not self.n_replaced:
                self.n_replaced += 1
                self.guessed = False
                self.logger.warning(
                    "output channel %s: the processor publishes objects that do not fit the "
                    "type it declares (%s); re-creating the channel for them once. Its readers "
                    "reconnect, and frames published meanwhile are counted as missed there; "
                    "declare the type with getOutputPvObjectType to avoid this",
                    self.channel,
                    exc,
                )
                self.server.remove_record(self.channel)  # type: ignore[union-attr]
                self.create(pvObject)
                try:
                    self.server.pva_server.update(self.channel, pvObject)  # type: ignore[union-attr]
                    self.n_published += 1
                    return
                except (pva.PvaException, ValueError) as again:
                    exc = again
        self.n_errors += 1
        now = time.monotonic()
        if now - self._last_error_log > 5:
            self._last_error_log = now
            self.logger.error(
                "cannot publish on %s: %s (counted in publisherStats.nErrors)", self.channel, exc
            )

    def _convert(self, pvObject: Any) -> Any:
        """A copy of the record's type holding ``pvObject``'s values, or None (also
        when the two have no field in common: there would be nothing to publish)."""
        template = self._template
        if template is None:
            return None
        out = template.copy()
        copied = 0
        try:
            for name in self._fields:
                if pvObject.hasField(name):
                    out[name] = pvObject[name]
                    copied += 1
        except Exception:  # noqa: BLE001 - a field of another type: not convertible
            return None
        return out if copied else None

    def reset_stats(self) -> None:
        self.n_published = self.n_errors = self.n_converted = 0


class StageServer:
    """The PvaServer of one consumer or collector, with its status and control records.

    ``on_command(command, args)`` is called in the control thread for every put on
    the control channel and returns the status message to publish. With ``acf`` (an
    access security file) puts on the control record are checked against its rules
    (:mod:`pvhpc.access_security`); UsageError if pvaccess refuses the file.
    """

    def __init__(self, id_name: str, stage_id: int, logger: logging.Logger, acf: str | None = None):
        self.id_name = id_name
        self.stage_id = stage_id
        self.logger = logger
        self.pva_server = pva.PvaServer()
        self.access_security_file = acf
        if acf:
            init_access_security(self.pva_server, acf)
        self.status_channel: str | None = None
        self.control_channel: str | None = None
        self._status_type: dict | None = None
        self._status_counter = 0
        self._commands: queue.Queue = queue.Queue()
        self._on_command: Callable[[str, str], str] | None = None
        self._control_thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def add_record(
        self, name: str, pv: Any, on_write: Callable | None = None, as_group: str | None = None
    ) -> None:
        with self._lock:
            if as_group is not None:
                self.pva_server.addRecordWithAs(name, pv, CONTROL_LEVEL, as_group, on_write)
            elif on_write is None:
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
        """Create the control record and start the thread that runs commands.

        Every put on the control channel is a command, whatever its request options.
        A put that asks the server to process the record (pvaccess's, ``pvput``, p4p
        without ``wait=``) reaches the record's write callback. One that does not
        (p4p's ``put(..., wait=True)`` asks for ``process=passive``) only changes the
        record's fields: a monitor on the record, from this process, sees those
        changes. Once that monitor is up, every change that is not an answer of ours
        is a command, and the write callback is ignored: it sees a processed put too,
        but from another thread, sometimes before and sometimes after the monitor (and
        the record it then reads may already hold our answer), so a put taken from
        both was run twice. Until the monitor is up (or if it cannot connect) the
        write callback brings the commands.
        """
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
        self._known_updates: list[tuple] = []
        self._monitor_live = False
        self._known_lock = threading.Lock()
        self._last_answer_time = 0.0
        self.add_record(
            channel,
            pva.PvObject(self._control_type, {self.id_name: self.stage_id}),
            self._on_control_write,
            CONTROL_GROUP if self.access_security_file else None,
        )
        if self.access_security_file:
            self.logger.info(protected_message(channel, self.access_security_file))
        self._control_thread = threading.Thread(
            target=self._control_loop, name="control", daemon=True
        )
        self._control_thread.start()
        self._watch_control_record(channel)

    # Record changes remembered to tell a put the server did not process from the
    # updates it did (our answers, processed puts); a bound on what is kept.
    _KNOWN_UPDATES = 64

    def _watch_control_record(self, channel: str) -> None:
        first = threading.Event()

        def on_update(pv: Any) -> None:  # pvaccess client thread
            if not first.is_set():
                first.set()  # the record's value when the monitor connected
                self._monitor_live = True
                return
            key = _control_key(pv)
            with self._known_lock:
                if key in self._known_updates:
                    self._known_updates.remove(key)
                    return
            self._commands.put((pv["command"], pv["args"]))

        self._self_monitor = pva.Channel(channel)  # kept for the process's life
        try:
            self._self_monitor.monitor(on_update, "record[queueSize=100]field()")
        except pva.PvaException as exc:
            self.logger.info("control channel %s: cannot watch it (%s)", channel, exc)
            return
        if not first.wait(2.0):
            self.logger.info(
                "control channel %s: this process cannot reach its own server in 2 s, so "
                "puts that ask not to process the record (p4p's wait=True) are not seen yet "
                "(check EPICS_PVA_ADDR_LIST)",
                channel,
            )

    def _remember(self, key: tuple) -> None:
        with self._known_lock:
            known = self._known_updates
            known.append(key)
            if len(known) > self._KNOWN_UPDATES:
                del known[0]

    def _on_control_write(self, pv: Any) -> None:
        # Runs in the server's thread, for a put that processes the record: hand over
        # and return, so the put completes. Its change reaches our monitor too.
        if self._monitor_live:
            return  # the record's monitor brings this put (see setup_control)
        try:
            self._remember(_control_key(pv))
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
        """Publish the outcome of a command in the control record's ``statusMessage``
        (control thread)."""
        if not self.control_channel:
            return
        # Strictly increasing: each answer is told apart from the others by it.
        now = max(time.time(), self._last_answer_time + 1e-6)
        self._last_answer_time = now
        value = {
            self.id_name: self.stage_id,
            "objectTime": now,
            "objectTimestamp": _split_time(now),
            "command": command or "",
            "args": args or "",
            "statusMessage": message,
        }
        pv = pva.PvObject(self._control_type, value)
        self._remember(_control_key(pv))
        try:
            self.pva_server.update(self.control_channel, pv)
        except pva.PvaException as exc:
            self.logger.error("cannot update control channel %s: %s", self.control_channel, exc)

    def stop(self) -> None:
        monitor = getattr(self, "_self_monitor", None)
        if monitor is not None:
            try:
                monitor.stopMonitor()
            except pva.PvaException:
                pass
        if self._control_thread is not None:
            self._commands.put(None)
            self._control_thread.join(5)
        try:
            self.pva_server.stop()
        except pva.PvaException:
            pass


def _control_key(pv: Any) -> tuple:
    """What tells one state of the control record from another."""
    return (pv["command"], pv["args"], pv["statusMessage"], pv["objectTime"])


def _split_time(t: float) -> dict:
    seconds = int(t)
    return {"secondsPastEpoch": seconds, "nanoseconds": int((t - seconds) * 1e9), "userTag": 0}
