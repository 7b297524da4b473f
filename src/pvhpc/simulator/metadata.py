"""Metadata channels the simulator serves beside the frames (``--metadata-pv``).

Each carries ``{double value, time_t timeStamp}`` and is updated just before every
frame, with the frame's ``uniqueId`` as value and the frame's own timestamp. PVA ones
are extra records on the simulator's PvaServer (:func:`metadata_object`); CA ones are
records of an embedded :class:`pvaccess.CaIoc` (:class:`CaMetadata`), whose
timestamps are made equal to the frame's by taking the frame timestamp from an IOC
clock record that the metadata records copy theirs from (``TSEL``).
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile

import pvaccess as pva

from ..endpoints import Endpoint, parse_channel_list

__all__ = ["CaMetadata", "MetadataPv", "metadata_object", "parse_metadata_pvs"]

logger = logging.getLogger("pvhpc.simulator")

#: One metadata channel: its name and protocol (``pva`` or ``ca``).
MetadataPv = Endpoint


def parse_metadata_pvs(text: str | None, option: str = "--metadata-pv") -> list[MetadataPv]:
    """Parse ``pva://x,ca://y,y`` (no prefix = CA) into a list; UsageError if malformed
    (unknown protocol, empty name, a channel given twice)."""
    return parse_channel_list(text, option, default_protocol="ca")


def metadata_object(value_type: pva.ScalarType = pva.DOUBLE) -> pva.PvObject:
    """An empty ``{double value, time_t timeStamp}`` record for a PVA metadata channel
    (``{string value, ...}`` for a replayed channel of strings)."""
    return pva.PvObject({"value": value_type, "timeStamp": pva.PvTimeStamp()})


#: Bytes an EPICS string record holds (``MAX_STRING_SIZE`` less the terminator).
CA_STRING_LENGTH = 39


class CaMetadata:
    """CA metadata records on an embedded IOC, stamped with a clock record's time.

    Per frame, :meth:`tick` processes the clock record, whose time becomes the
    frame's timestamp; the metadata records copy that time through ``TSEL`` when
    :meth:`update` writes their values (with ``clocked=False``, for a replay, each
    record is stamped when written). Channels named in ``strings`` (a replay's
    channels of text) are ``stringin`` records, the others ``ai``. One CA IOC can be
    started per process.
    """

    def __init__(
        self,
        names: list[str],
        tag: str,
        quiet: bool,
        clocked: bool = True,
        strings: frozenset[str] | set[str] = frozenset(),
    ):
        self.names = names
        self.strings = set(strings) & set(names)
        self._truncated: set[str] = set()
        self.clock = f"{tag}:clock"
        self.clock_text = f"{tag}:clockText"
        dbd_path = _dbd_path()
        records = [
            f'record(ai, "{self.clock}") {{ field(FLNK, "{self.clock_text}") }}',
            f'record(stringin, "{self.clock_text}") {{ field(DTYP, "Soft Timestamp") '
            f'field(INP, "@%s.%09f") field(TSEL, "{self.clock}.TIME") }}',
        ]
        records += [
            (f'record(stringin, "{name}") {{' if name in self.strings else
             f'record(ai, "{name}") {{ field(PREC, "6")')
            + (f' field(TSEL, "{self.clock}.TIME")' if clocked else "")
            + " }"
            for name in names
        ]  # fmt: skip
        ioc = pva.CaIoc()
        with tempfile.NamedTemporaryFile("w", suffix=".db", delete=False) as db:
            db.write("\n".join(records) + "\n")
        try:
            with _quiet_stdout(quiet):
                if ioc.dbLoadDatabase("base.dbd", dbd_path, "") != 0:
                    raise RuntimeError(
                        f"cannot load base.dbd from {dbd_path or 'EPICS_DB_INCLUDE_PATH'}"
                    )
                if ioc.pvapyRegisterRecordDeviceDriver() != 0:
                    raise RuntimeError("cannot register the CA IOC's record and device support")
                if ioc.dbLoadRecords(db.name, "") != 0:
                    raise RuntimeError(f"cannot load metadata records {', '.join(names)}")
                if ioc.iocInit() != 0:
                    raise RuntimeError("CA IOC initialisation failed")
        finally:
            os.unlink(db.name)
        self.ioc = ioc

    def tick(self) -> tuple[int, int]:
        """Process the clock record; return its time as (seconds, nanoseconds)."""
        self.ioc.putField(self.clock + ".PROC", 1)
        seconds, _, nanos = self.ioc.getField(self.clock_text).partition(".")
        return int(seconds), int(nanos)

    def update(self, value: float) -> None:
        put = self.ioc.putField
        for name in self.names:
            put(name, value)

    def put(self, name: str, value: float | str) -> None:
        """Write one record's value, stamped now (a replayed update; records made with
        ``clocked=False`` take the time they are processed at). A string record gets
        the value's text, cut to what EPICS strings hold, at a character boundary of
        its UTF-8 bytes (a warning, once a channel)."""
        if name in self.strings:
            value = str(value)
            encoded = value.encode()
            if len(encoded) > CA_STRING_LENGTH:
                if name not in self._truncated:
                    self._truncated.add(name)
                    logger.warning(
                        "CA metadata channel %s: %r is longer than the %d bytes of an "
                        "EPICS string record; served cut to that length (a PVA channel, "
                        "-mpv pva://%s, keeps the whole text)",
                        name,
                        value,
                        CA_STRING_LENGTH,
                        name,
                    )
                value = encoded[:CA_STRING_LENGTH].decode(errors="ignore")
        self.ioc.putField(name, value)

    def stop(self) -> None:
        try:
            self.ioc.stop()
        except pva.PvaException as exc:
            logger.debug("CA IOC shutdown: %s", exc)


def _dbd_path() -> str:
    """Where the embedded IOC finds ``base.dbd``: the user's EPICS_DB_INCLUDE_PATH if
    it has one there, else the ``dbd`` folder shipped with pvaccess ('' = use the env)."""
    user = os.environ.get("EPICS_DB_INCLUDE_PATH")
    if user and any(os.path.isfile(os.path.join(d, "base.dbd")) for d in user.split(os.pathsep)):
        return ""
    return os.path.join(os.path.dirname(pva.__file__), "dbd")


class _quiet_stdout:
    """Silence the IOC's banner on file descriptor 1 (not Python's sys.stdout)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.saved: int | None = None

    def __enter__(self):
        if self.enabled:
            try:
                sys.stdout.flush()
                self.saved = os.dup(1)
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, 1)
                os.close(devnull)
            except OSError:
                self.saved = None
        return self

    def __exit__(self, *exc):
        if self.saved is not None:
            os.dup2(self.saved, 1)
            os.close(self.saved)
        return False
