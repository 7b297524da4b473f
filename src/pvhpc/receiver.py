"""The receive path: one monitor on one input channel, counting what arrives.

A :class:`Receiver` owns a ``pvaccess.Channel`` monitor. For every update, in the
monitor thread, it counts the update, skips the first ``--skip-initial-updates``,
reads the object id (counting missed ids with an :class:`~pvhpc.counting.IdTracker`)
and hands the object to its ``deliver`` callable: the processor itself, or a
:class:`~pvhpc.receiver_queue.ReceiverQueue` drained by a processing thread.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import pvaccess as pva

from .counting import IdTracker
from .errors import distributor_refused, server_answer
from .loopback import search_settings

__all__ = ["AbsenceNotice", "Receiver", "absent_message", "id_getter"]


def _thread_state_pinner() -> Callable[[], Any]:
    """A function that keeps the calling thread's Python thread state for good.

    pvaccess calls monitor callbacks from its own C++ threads through the GIL-state
    API: every call creates a Python thread state, and deletes it on return, with
    the frame stack memory mapped and unmapped each time. Measured, that was as
    much CPU per frame as everything else a bare counting callback costs (a bare
    monitor at 5 kHz, 128x128: 50 µs → 28 µs per frame with the state kept). One
    extra ``PyGILState_Ensure`` made from inside the first callback of a thread, and
    never released, keeps the state alive: later callbacks reuse it. It is
    released when the interpreter finalizes. Without ctypes (not CPython) it does nothing.
    """
    try:
        import ctypes

        ensure = ctypes.pythonapi.PyGILState_Ensure
    except (ImportError, AttributeError):  # pragma: no cover - not CPython
        return lambda: None
    ensure.restype = ctypes.c_int
    ensure.argtypes = []
    return ensure


# While unconnected, a receiver moves its monitor to a fresh channel after this many
# seconds, then after twice as long each time, up to every PROBE_MAX seconds.
PROBE_FIRST = 0.25
PROBE_MAX = 1.0
# Fresh channels one receiver may create over its life (see Receiver._retire).
MAX_CHANNELS = 256
# A monitor that has sent nothing this long after its channel (re)connected did not
# resume (see Receiver.supervise).
RESUME_TIMEOUT = 1.0
# The "subscribing again" warning is given at most this often (then at debug level).
RESUBSCRIBE_WARNING_PERIOD = 60.0
# A distributor monitor that has sent nothing this long after subscribing gets its
# source checked for the distributor plugin (see Receiver._check_distributor).
DISTRIBUTOR_CHECK_AFTER = 1.0
MAX_CHECK_CHANNELS = 64
# A receiver whose channel no server has answered this long after start says so, once.
ABSENT_WARNING_AFTER = 10.0

_pin_thread_state = _thread_state_pinner()
# Threads whose state is pinned. An ident reused by a later thread only means
# that thread goes unpinned (slower, still correct).
_pinned_threads: set[int] = set()
_get_ident = threading.get_ident

# BYTE is not among them: pvaccess reads a BYTE field as a one-character string
# (and fails on negative values), not as an integer.
_TYPED_GETTERS = {
    pva.ScalarType.UBYTE: "getUByte",
    pva.ScalarType.SHORT: "getShort",
    pva.ScalarType.USHORT: "getUShort",
    pva.ScalarType.INT: "getInt",
    pva.ScalarType.UINT: "getUInt",
    pva.ScalarType.LONG: "getLong",
    pva.ScalarType.ULONG: "getULong",
}


def id_getter(pv: Any, field: str) -> Callable[[Any], int]:
    """Return the cheapest function reading integer ``field`` from objects shaped like ``pv``.

    Raises KeyError if the object has no such field, TypeError if it is not an
    integer scalar.
    """
    method = _id_method(pv, field)
    return lambda obj: method(obj, field)


def _id_method(pv: Any, field: str) -> Callable[[Any, str], int]:
    """The unbound typed getter (``PvObject.getInt``…) reading ``field`` of ``pv``."""
    ftype = _field_type(pv.getIntrospectionDict(), field)
    # An array ([type]) or a structure (dict) is no scalar (and not hashable).
    name = _TYPED_GETTERS.get(ftype) if isinstance(ftype, pva.ScalarType) else None
    if name is None:
        raise TypeError(f"object id field {field!r} is not an integer (it is {ftype})")
    return getattr(type(pv), name)


def _field_type(intro: dict, field: str):
    node: Any = intro
    for part in field.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(field)
        node = node[part]
    return node


class Receiver:
    """Monitor one channel and deliver counted objects.

    ``deliver(pv, oid)`` runs in the monitor thread and must not block for long. The
    counters are plain ints written only by that thread and read by reporters.
    """

    def __init__(
        self,
        channel: str,
        request: str,
        deliver: Callable[[Any, int], None],
        tracker: IdTracker,
        oid_field: str = "uniqueId",
        skip_initial: int = 1,
        provider: Any = None,
        logger: logging.Logger | None = None,
        distributor: str | None = None,
        on_fatal: Callable[[str], None] | None = None,
    ):
        self.channel_name = channel
        self.request = request
        self.deliver = deliver
        self.tracker = tracker
        self.oid_field = oid_field
        self.skip_initial = max(0, int(skip_initial))
        self.provider = provider if provider is not None else pva.PVA
        self.logger = logger or logging.getLogger("pvhpc.receiver")
        #: The distributor plugin the request asks for (None: no distributor).
        self.distributor = distributor
        #: Called (main thread) with one line when the stream cannot work at all.
        self.on_fatal = on_fatal
        self._distributor_ok = distributor is None
        self._distributor_check: threading.Thread | None = None
        self._distributor_refusal: str | None = None
        self._next_check = 0.0
        self._check_channel: Any = None
        self._n_check_channels = 0
        self._started_at = 0.0
        self._last_resubscribe_warning = -math.inf
        self._n_resubscribed = 0
        self.n_received = 0
        self.n_skipped = 0
        self.n_errors = 0
        self.n_overruns_base = 0
        self.connected = False
        self.n_connects = 0
        # The typed getter of the id field, called as get_id(pv, oid_field): one call
        # per frame, no Python frame of ours around it.
        self._get_id: Callable[[Any, str], int] | None = None
        self._to_skip = self.skip_initial
        self._channel: Any = None
        # Each subscription (fresh channel) has its own generation; connection
        # callbacks of replaced channels are ignored.
        self._generation = 0
        self._ever_connected = False
        self._closed_overruns = 0
        self._subscribed_at = 0.0
        self._probe_window = PROBE_FIRST
        self._stopped = False
        self._absence = AbsenceNotice(self.channel_name, self.provider)
        self._last_error_log = 0.0
        self._connection_lock = threading.Lock()
        # What pvaccess may still call stays alive (see _retire): one bound method is
        # every channel's monitor callback; replaced channels keep their callbacks.
        self._update_callback = self._on_update
        self._connection_callback: Callable[[bool], None] | None = None
        self._retired: list[tuple[Any, Any]] = []
        self._out_of_channels = False
        # n_received when the channel was subscribed or lost (None: nothing to check),
        # and when it connected.
        self._quiet_mark: int | None = None
        self._connected_at = 0.0
        #: Called once, in the monitor thread, with the first object the monitor sends
        #: (before it is skipped or counted); then cleared.
        self.first_update: Callable[[Any], None] | None = None

    def start(self) -> None:
        """Create the channel and start the monitor; returns at once, connects later."""
        self._started_at = time.monotonic()
        self._absence.start(self._started_at)
        self._subscribe(self._started_at)

    def supervise(self, now: float | None = None) -> None:
        """Follow the connection; while unconnected, move to a fresh channel now and then.

        Called by the stage's main thread every tick. pvAccess searches for an absent
        channel less and less often (measured: a consumer started 8 s before its
        source connected 6.4 s after the source appeared, missing hundreds of
        frames), and the beacons that would cut the back-off short reach only one
        client per host when they are unicast. A fresh channel searches at once: so
        while unconnected the monitor is moved to a fresh channel ``PROBE_FIRST``
        seconds after subscribing or losing the source, then after twice as long
        each time, up to every ``PROBE_MAX`` seconds, for at most ``MAX_CHANNELS``
        channels over the receiver's life (about four minutes of waiting in all).

        A monitor sends the source's current value as soon as its channel connects.
        One that has sent nothing ``RESUME_TIMEOUT`` seconds after connecting did not
        resume: pvAccess reconnects a channel whose record was re-created with
        another structure, and its monitor can stay silent (seen in about 1 of 10
        runs of ``test_objects_without_a_usable_id_are_counted_as_errors``). The
        monitor then moves to a fresh channel.

        The connection is also polled here: a connection made inside ``monitor()``,
        before the callback could be set, is never reported by a callback.
        """
        if self._stopped:
            return
        now = time.monotonic() if now is None else now
        if not (self.n_connects or self.n_received):
            self._absence.check(now, self._channel_up, self.logger)
        if not self._distributor_ok and self._supervise_distributor(now):
            return
        channel = self._channel
        try:
            up = channel is not None and bool(channel.isConnected())
        except pva.PvaException:
            up = False
        if up != self.connected:
            self._on_connection(up, self._generation, polled=True)
        if up:
            self._probe_window = PROBE_FIRST
            mark = self._quiet_mark
            if (
                mark is not None
                and self._distributor_ok  # a silent distributor monitor is checked first
                and now - self._connected_at >= RESUME_TIMEOUT
            ):
                self._quiet_mark = None
                if self.n_received == mark and self._may_subscribe_again():
                    self._n_resubscribed += 1
                    quiet = now - self._last_resubscribe_warning < RESUBSCRIBE_WARNING_PERIOD
                    self.logger.log(
                        logging.DEBUG if quiet else logging.WARNING,
                        "connected to %s but its monitor sent nothing in %g s (a monitor "
                        "that did not resume after the channel came back); subscribing "
                        "again (%d time(s) so far; said at most once a minute)",
                        self.channel_name,
                        RESUME_TIMEOUT,
                        self._n_resubscribed,
                    )
                    if not quiet:
                        self._last_resubscribe_warning = now
                    self._subscribe(now)
        elif now - self._subscribed_at >= self._probe_window and self._may_subscribe_again():
            self._probe_window = min(self._probe_window * 2, PROBE_MAX)
            self._subscribe(now)

    def _supervise_distributor(self, now: float) -> bool:
        """Until the source has sent something, check that it has the distributor.

        A server without the distributor plugin (PVXS, as in p4p and current
        areaDetector IOCs) refuses a monitor that asks for it and pvaccess says
        nothing: the monitor stays silent. So once a distributor monitor has been
        silent for ``DISTRIBUTOR_CHECK_AFTER`` seconds, a thread asks the source for
        its id field plainly and through the plugin (in a group of its own, so that
        no share of the stream is taken); a source that answers the first and
        refuses the second is reported through ``on_fatal``. Returns True if it was.
        """
        if self.n_received:
            self._distributor_ok = True
            return False
        refusal = self._distributor_refusal
        if refusal is not None:
            self._distributor_ok = True
            self.stop()
            if self.on_fatal is not None:
                self.on_fatal(distributor_refused(self.channel_name, self.distributor, refusal))
            return True
        check = self._distributor_check
        if check is not None and check.is_alive():
            return False
        if now - self._started_at >= DISTRIBUTOR_CHECK_AFTER and now >= self._next_check:
            # Again every few seconds while the source is absent.
            self._next_check = now + 3 * DISTRIBUTOR_CHECK_AFTER
            self._distributor_check = threading.Thread(
                target=self._check_distributor, name="distributor-check", daemon=True
            )
            self._distributor_check.start()
        return False

    def _check_distributor(self) -> None:
        # Its own thread: a get blocks up to its timeout. A fresh channel searches at
        # once (see supervise); at most MAX_CHECK_CHANNELS, never freed (see _retire).
        if self._check_channel is None or self._n_check_channels < MAX_CHECK_CHANNELS:
            self._n_check_channels += 1
            self._check_channel = pva.Channel(self.channel_name, self.provider)
            self._retired.append((self._check_channel, None))
        channel = self._check_channel
        channel.setTimeout(2.0)
        try:
            channel.get(f"field({self.oid_field})")
        except pva.PvaException:
            return  # no source (yet): nothing to conclude
        try:
            channel.get(f"field(_[{self.distributor}=group:pvhpc-check;updates:1])")
        except pva.PvaException as exc:
            self._distributor_refusal = server_answer(str(exc))
        else:
            self._distributor_ok = True

    def _may_subscribe_again(self) -> bool:
        """Whether one more fresh channel may be made; says so once when not."""
        if self._generation < MAX_CHANNELS:  # one channel per generation
            return True
        if not self._out_of_channels:
            self._out_of_channels = True
            self.logger.info(
                "%s: tried %d fresh channels; from now on waiting on pvAccess's own "
                "search, which looks less and less often",
                self.channel_name,
                MAX_CHANNELS,
            )
        return False

    def _subscribe(self, now: float) -> None:
        """Monitor the channel on a fresh ``pvaccess.Channel`` (main thread)."""
        self._retire()
        with self._connection_lock:
            self._generation += 1
            generation = self._generation
            self._ever_connected = False
        channel = pva.Channel(self.channel_name, self.provider)
        # The first update of a fresh monitor is the source's current object.
        self._to_skip = self.skip_initial
        self._subscribed_at = now
        self._quiet_mark = self.n_received
        channel.monitor(self._update_callback, self.request)
        callback = self._connection_callback = lambda up: self._on_connection(up, generation)
        # The callback is set after monitor() returns: set before, pvaccess can run it
        # without the GIL inside monitor() and abort the process.
        channel.setConnectionCallback(callback)
        self._channel = channel

    def _retire(self) -> None:
        """Stop the current channel's monitor and keep the channel for good.

        A replaced channel goes on searching, connects when the source appears and
        goes on following its connection. pvaccess delivers each change from its
        own thread into the channel object, without holding a reference: a channel
        freed while a change is under way is used after it was freed. Measured: a
        segmentation fault within seconds with channels coming and going, and once
        in about 40 starts of a collector whose four producers were starting too.
        Freeing one only after it had connected still crashed once under churn. No
        moment is known to be safe, so a replaced channel is never freed;
        ``MAX_CHANNELS`` bounds how many a receiver makes.
        """
        channel, self._channel = self._channel, None
        if channel is None:
            return
        try:
            self._closed_overruns += int(channel.getMonitorCounters().get("nOverruns", 0))
        except pva.PvaException:
            pass
        try:
            channel.stopMonitor()
        except pva.PvaException as exc:
            self.logger.debug("stopping monitor on %s: %s", self.channel_name, exc)
        self._retired.append((channel, self._connection_callback))

    def stop(self) -> None:
        """Stop the monitor; after this returns no more objects are delivered."""
        self._stopped = True
        if self._channel is not None:
            try:
                self._channel.stopMonitor()
            except pva.PvaException as exc:
                self.logger.debug("stopping monitor on %s: %s", self.channel_name, exc)

    def say_if_never_connected(self) -> None:
        """At the end of a run that went as asked: a warning if no server ever
        answered for the channel (a name mistyped, a server not running)."""
        answered = bool(self.n_connects or self.n_received)
        self._absence.final(answered, self.logger, "nothing was received")

    def _channel_up(self) -> bool:
        channel = self._channel
        try:
            return channel is not None and bool(channel.isConnected())
        except pva.PvaException:
            return False

    @property
    def n_overruns(self) -> int:
        """Updates the server replaced before we read them (from the monitor counters)."""
        current = 0
        channel = self._channel
        if channel is not None:
            try:
                current = int(channel.getMonitorCounters().get("nOverruns", 0))
            except pva.PvaException:
                current = 0
        return self._closed_overruns + current - self.n_overruns_base

    def source_id(self, timeout: float = 2.0) -> int | None:
        """The object id the source holds now (a get), or None if it cannot be read."""
        pv = self.source_fields(self.oid_field, timeout)
        if pv is None:
            return None
        try:
            return id_getter(pv, self.oid_field)(pv)
        except Exception as exc:  # noqa: BLE001 - no usable id: nothing to reconcile
            self.logger.debug("no usable current id on %s: %s", self.channel_name, exc)
            return None

    def source_fields(self, fields: str, timeout: float = 2.0) -> Any:
        """These fields (``a,b``) of the source's current object, or None."""
        try:
            channel = pva.Channel(self.channel_name, self.provider)
            channel.setTimeout(timeout)
            return channel.get(f"field({fields})")
        except Exception as exc:  # noqa: BLE001 - source gone: nothing to read
            self.logger.debug("cannot read %s of %s: %s", fields, self.channel_name, exc)
            return None

    def sample(self, timeout: float = 0.2) -> Any:
        """The source's current object (a get of the whole structure), or None if the
        source does not answer within ``timeout`` seconds. Blocks; main thread."""
        try:
            channel = pva.Channel(self.channel_name, self.provider)
            channel.setTimeout(timeout)
            return channel.get("field()")
        except pva.PvaException as exc:
            self.logger.debug("no current object from %s yet: %s", self.channel_name, exc)
            return None

    def reset_stats(self) -> None:
        self.n_overruns_base += self.n_overruns
        if self._quiet_mark is not None:
            self._quiet_mark -= self.n_received  # still "nothing since" if nothing came
        self.n_received = self.n_skipped = self.n_errors = 0
        self.tracker.reset()

    def set_skip_initial(self, n: int) -> None:
        """Change ``--skip-initial-updates``; applies from the next (re)connection."""
        self.skip_initial = max(0, int(n))

    def _on_connection(self, connected: bool, generation: int, polled: bool = False) -> None:
        # From pvaccess threads (callback) or the main thread (polled).
        with self._connection_lock:
            if generation != self._generation or connected == self.connected:
                return  # a replaced channel, or a change already seen
            self.connected = connected
            again = connected and self._ever_connected
            if connected:
                self._ever_connected = True
                self.n_connects += 1
                self._connected_at = time.monotonic()
            else:
                # Give pvAccess's own reconnection a moment before probing.
                self._subscribed_at = time.monotonic()
                self._probe_window = PROBE_FIRST
                self._quiet_mark = self.n_received
        if self._stopped:  # nothing waits for it any more
            self.logger.debug("%s %s", self.channel_name, "up" if connected else "down")
            return
        if connected:
            if again and (not polled or self.n_received == self._quiet_mark):
                # The same channel reconnected: its monitor sends the source's current
                # value first, like a new one (a fresh subscription already skips it).
                # Seen by polling, that value may have come already: then nothing is
                # skipped, never the frame after it.
                self._to_skip = self.skip_initial
            self.logger.info("connected to %s", self.channel_name)
        else:
            self.logger.warning(
                "lost connection to %s; waiting for it to come back", self.channel_name
            )

    def _on_update(self, pv: Any) -> None:
        ident = _get_ident()
        if ident not in _pinned_threads:
            _pinned_threads.add(ident)
            _pin_thread_state()
        if self.first_update is not None:
            hook, self.first_update = self.first_update, None
            hook(pv)
        self.n_received += 1
        if self._to_skip:
            self._to_skip -= 1
            self.n_skipped += 1
            return
        get_id = self._get_id
        try:
            oid = get_id(pv, self.oid_field) if get_id is not None else self._read_id(pv)
        except Exception:
            # The getter was made for another structure (a source re-created with
            # another id type), or this object has no usable id.
            try:
                oid = self._read_id(pv)
            except Exception as exc:  # malformed object: counted, the stream goes on
                self.n_errors += 1
                self._log_bad_object(exc)
                return
        self.tracker.update(oid)
        self.deliver(pv, oid)

    def _read_id(self, pv: Any) -> int:
        """The id of ``pv`` by a getter made for its structure, kept for the next ones."""
        self._get_id = None
        get_id = _id_method(pv, self.oid_field)
        oid = get_id(pv, self.oid_field)
        self._get_id = get_id
        return oid

    def _log_bad_object(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._last_error_log > 5:
            self._last_error_log = now
            self.logger.error(
                "object from %s has no usable id field %r (%s: %s); counted as an error "
                "(check --oid-field)",
                self.channel_name,
                self.oid_field,
                type(exc).__name__,
                exc,
            )


class AbsenceNotice:
    """Says, once, that no server has answered for a channel ``ABSENT_WARNING_AFTER``
    seconds after it was first asked for, and, at the end of a run, that none ever did.

    Owned by one thread (a stage's main thread); ``label`` names the channel in the
    lines ("det:image", "metadata channel x"); ``answered`` is a callable asked only
    once the time has come.
    """

    def __init__(self, label: str, provider: Any):
        self.label, self.provider = label, provider
        self.started_at = 0.0
        self.said = False

    def start(self, now: float) -> None:
        self.started_at = now

    def check(self, now: float, answered: Callable[[], bool], logger: logging.Logger) -> None:
        if self.said or not self.started_at or now - self.started_at < ABSENT_WARNING_AFTER:
            return
        if not answered():
            self.said = True
            logger.warning("%s", absent_message(self.label, self.provider, ABSENT_WARNING_AFTER))

    def final(self, answered: bool, logger: logging.Logger, nothing: str) -> None:
        """The end-of-run line (``nothing``: what was not received), if none answered."""
        if self.started_at and not answered:
            settings = "" if self.said else f" ({search_settings(self.provider == pva.CA)})"
            logger.warning(
                "%s: no server answered in the %.0f s this ran, %s%s",
                self.label,
                time.monotonic() - self.started_at,
                nothing,
                settings,
            )


def absent_message(channel: str, provider: Any, after: float) -> str:
    """The one line for a channel no server has answered in ``after`` seconds."""
    ca = provider == pva.CA
    return (
        f"still waiting for {channel}: no {'CA' if ca else 'PVA'} server has answered in "
        f"{after:g} s. If its source is running, check the channel name and that the "
        f"source can be reached ({search_settings(ca)})"
    )
