"""The receive path (:mod:`pvhpc.receiver`): a Receiver's monitor on a real PvaServer record.

Every source is a record of a ``pvaccess.PvaServer`` in the test process (or, for
a server without the distributor plugin, p4p in a child process). The test's
thread plays the stage's main thread: it calls ``supervise()`` while it waits.
"""

from __future__ import annotations

import logging
import time

import pvaccess as pva
import pytest

from p4p_peer import P4pSource
from pvhpc import receiver as receiver_module
from pvhpc.counting import IdTracker
from pvhpc.receiver import Receiver, id_getter

QUEUED = "record[queueSize=100]field()"
FRAME = {"uniqueId": pva.INT, "value": pva.DOUBLE}

# pvaccess may call into a channel for as long as the process lives (see
# Receiver._retire): receivers, and so their channels, are never freed.
_KEPT: list = []


def frame(oid: int, shape: dict = FRAME) -> pva.PvObject:
    return pva.PvObject(shape, {"uniqueId": oid})


@pytest.fixture(scope="module")
def server():
    s = pva.PvaServer()
    yield s
    s.removeAllRecords()


class Delivered:
    """The ``deliver`` callable of a receiver: records the ids it was handed."""

    def __init__(self):
        self.ids: list[int] = []

    def __call__(self, pv, oid) -> None:
        assert oid == pv["uniqueId"]
        self.ids.append(oid)


_made: list[Receiver] = []


def make_receiver(channel: str, request: str = QUEUED, **kwargs) -> tuple[Receiver, Delivered]:
    delivered = Delivered()
    r = Receiver(channel, request, delivered, IdTracker(1), **kwargs)
    _KEPT.append(r)
    _made.append(r)
    return r, delivered


@pytest.fixture(autouse=True)
def _stop_receivers():
    """Every receiver a test made is stopped when it ends (and kept, see _KEPT)."""
    yield
    while _made:
        _made.pop().stop()


def drive(receivers, condition, what: str, timeout: float = 10):
    """Call ``supervise()`` on ``receivers`` as the stage's main thread does until
    ``condition()`` is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        for r in receivers:
            r.supervise()
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.02)


def started(server, channel: str, first_id: int = 0, **kwargs) -> tuple[Receiver, Delivered]:
    """A record holding ``first_id`` and a receiver whose monitor sent its first update."""
    server.addRecord(channel, frame(first_id))
    r, delivered = make_receiver(channel, **kwargs)
    r.start()
    drive([r], lambda: r.n_received >= 1, "the monitor's first update")
    return r, delivered


def publish(server, channel: str, ids, shape: dict = FRAME) -> None:
    for i in ids:
        server.update(channel, frame(i, shape))


def test_counts_every_update_skips_the_first_and_delivers_ids_in_order(server, prefix):
    channel = f"{prefix}:a"
    r, delivered = started(server, channel)
    assert (r.n_received, r.n_skipped, delivered.ids) == (1, 1, [])
    assert r.connected and r.n_connects == 1
    publish(server, channel, range(1, 51))
    drive([r], lambda: r.n_received == 51, "51 updates")
    assert delivered.ids == list(range(1, 51))
    assert (r.n_skipped, r.n_errors, r.tracker.n_missed) == (1, 0, 0)
    assert (r.tracker.first, r.tracker.last) == (1, 50)


@pytest.mark.parametrize("skip", [0, 3])
def test_skip_initial_skips_that_many_updates(server, prefix, skip):
    channel = f"{prefix}:a"
    server.addRecord(channel, frame(0))
    r, delivered = make_receiver(channel, skip_initial=skip)
    r.start()
    drive([r], lambda: r.n_received >= 1, "the first update")
    publish(server, channel, range(1, 11))
    drive([r], lambda: r.n_received == 11, "11 updates")
    assert r.n_skipped == skip
    assert delivered.ids == list(range(skip, 11))


def test_ids_that_never_arrive_are_counted_as_missed(server, prefix):
    channel = f"{prefix}:a"
    r, delivered = started(server, channel)
    publish(server, channel, [1, 2, 5, 6, 9])
    drive([r], lambda: r.n_received == 6, "6 updates")
    assert delivered.ids == [1, 2, 5, 6, 9]
    assert r.tracker.n_missed == 4


def test_objects_without_a_usable_id_are_errors_and_the_stream_goes_on(server, prefix, caplog):
    """Objects without uniqueId, then with a string uniqueId, then good ones (the record
    re-created each time, as a source restarted with another configuration)."""
    channel = f"{prefix}:a"
    shapes = [
        {"value": pva.DOUBLE},
        {"uniqueId": pva.STRING, "value": pva.DOUBLE},
        FRAME,
    ]
    r, delivered = make_receiver(channel)
    caplog.set_level(logging.ERROR, logger="pvhpc.receiver")
    for phase, shape in enumerate(shapes, 1):
        if phase > 1:
            server.removeRecord(channel)
            drive([r], lambda: not r.connected, "the receiver to see the record go")
        server.addRecord(channel, pva.PvObject(shape, {}))
        if phase == 1:
            r.start()
        # The new record's current object arrived (and was skipped): the monitor is live.
        drive(
            [r],
            lambda phase=phase: r.n_connects >= phase and r.n_skipped >= phase,
            f"the first update of record {phase}",
        )
        for i in range(1, 11):
            value = {"value": float(i)}
            if "uniqueId" in shape:
                value["uniqueId"] = i if shape["uniqueId"] == pva.INT else f"frame-{i}"
            server.update(channel, pva.PvObject(shape, value))
        drive([r], lambda phase=phase: r.n_received == 11 * phase, f"record {phase}'s updates")
    assert r.n_errors == 20
    assert delivered.ids == list(range(1, 11))
    assert r.tracker.n_missed == 0
    assert "no usable id field 'uniqueId'" in caplog.text


def test_an_id_field_of_another_integer_type_after_a_restart_is_still_read(server, prefix):
    """A source re-created with a LONG uniqueId where it had an INT: every object has a
    usable id, so none is an error (the getter made for the first structure is stale)."""
    channel = f"{prefix}:a"
    r, delivered = started(server, channel)
    publish(server, channel, [1, 2, 3])
    drive([r], lambda: r.n_received == 4, "4 updates")
    server.removeRecord(channel)
    drive([r], lambda: not r.connected, "the receiver to see the record go")
    long_frame = {"uniqueId": pva.LONG, "value": pva.DOUBLE}
    server.addRecord(channel, frame(3, long_frame))
    drive([r], lambda: r.n_received == 5, "the new record's first update")
    publish(server, channel, [4, 5, 6], long_frame)
    drive([r], lambda: r.n_received == 8, "8 updates")
    assert r.n_errors == 0
    assert delivered.ids == [1, 2, 3, 4, 5, 6]


def test_a_stopped_receiver_does_not_say_it_waits_for_a_source_that_goes(server, prefix, caplog):
    """After stop() nothing waits for the source: its going is no warning. (pvaccess
    reports it to the stopped channel's callback only sometimes, and late: the test
    makes the call pvaccess makes.)"""
    caplog.set_level(logging.DEBUG, logger="pvhpc.receiver")
    channel = f"{prefix}:a"
    r, _ = started(server, channel)
    r.stop()
    server.removeRecord(channel)
    r._connection_callback(False)
    assert not r.connected
    assert "lost connection" not in caplog.text
    assert f"{channel} down" in caplog.text


def test_a_channel_no_server_answers_is_named_with_where_searches_go(
    server, prefix, caplog, monkeypatch
):
    """A mistyped name: one warning while it waits, naming the channel and the EPICS
    address settings; one at the end that nothing came. A channel that connected
    gets neither."""
    present, _ = started(server, f"{prefix}:a")  # connected (however long that took)
    monkeypatch.setattr(receiver_module, "ABSENT_WARNING_AFTER", 0.3)
    caplog.set_level(logging.WARNING, logger="pvhpc.receiver")
    absent, _ = make_receiver(f"{prefix}:nosuch")
    absent.start()
    drive([absent, present], lambda: "still waiting" in caplog.text, "the warning", 5)
    drive([absent, present], lambda: True, "one more tick")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        f"still waiting for {prefix}:nosuch: no PVA server has answered in 0.3 s. If its "
        "source is running, check the channel name and that the source can be reached "
        "(EPICS_PVA_ADDR_LIST='127.0.0.1', EPICS_PVA_AUTO_ADDR_LIST='NO')"
    ]
    for r in (absent, present):
        r.stop()
        r.say_if_never_connected()
    assert len(caplog.records) == 2
    assert caplog.records[1].getMessage().startswith(f"{prefix}:nosuch: no server answered in the ")
    assert caplog.records[1].getMessage().endswith("this ran, nothing was received")


_INTEGER_EXTREMES = [
    (pva.UBYTE, 255),
    (pva.SHORT, -32768),
    (pva.USHORT, 65535),
    (pva.INT, -(2**31)),
    (pva.UINT, 2**32 - 1),
    (pva.LONG, -(2**63)),
    (pva.ULONG, 2**64 - 1),
]


@pytest.mark.parametrize("ftype,value", _INTEGER_EXTREMES)
def test_id_getter_reads_every_integer_type_exactly(ftype, value):
    pv = pva.PvObject({"uniqueId": ftype, "inner": {"id": ftype}}, {"uniqueId": value})
    pv["inner.id"] = value
    assert id_getter(pv, "uniqueId")(pv) == value
    assert id_getter(pv, "inner.id")(pv) == value
    other = pva.PvObject({"uniqueId": ftype}, {"uniqueId": 7})
    assert id_getter(pv, "uniqueId")(other) == 7


@pytest.mark.parametrize("field", ["value", "name", "flag", "byte", "array", "inner", "any"])
def test_id_getter_refuses_a_field_that_is_not_an_integer_scalar(field):
    """BYTE too: pvaccess reads it as a one-character string, not as an integer."""
    pv = pva.PvObject(
        {
            "value": pva.DOUBLE,
            "byte": pva.BYTE,
            "name": pva.STRING,
            "flag": pva.BOOLEAN,
            "array": [pva.INT],
            "inner": {"id": pva.INT},
            "any": (),
        }
    )
    with pytest.raises(TypeError, match=f"object id field '{field}' is not an integer"):
        id_getter(pv, field)


@pytest.mark.parametrize("field", ["uniqueid", "nosuch", "uniqueId.x", "inner.nosuch", ""])
def test_id_getter_raises_key_error_for_a_missing_field(field):
    pv = pva.PvObject({"uniqueId": pva.INT, "inner": {"id": pva.INT}})
    with pytest.raises(KeyError):
        id_getter(pv, field)


def test_first_update_hook_is_called_once_with_the_first_object(server, prefix):
    channel = f"{prefix}:a"
    server.addRecord(channel, frame(41))
    r, delivered = make_receiver(channel)
    seen = []
    # Called before the object is counted: n_received is still 0.
    r.first_update = lambda pv: seen.append((pv["uniqueId"], r.n_received))
    r.start()
    drive([r], lambda: r.n_received >= 1, "the first update")
    publish(server, channel, [42, 43])
    drive([r], lambda: r.n_received == 3, "3 updates")
    server.removeRecord(channel)
    drive([r], lambda: not r.connected, "the receiver to see the record go")
    server.addRecord(channel, frame(43))
    drive([r], lambda: r.n_received == 4, "the new connection's first update")
    assert seen == [(41, 0)]
    assert r.first_update is None
    assert delivered.ids == [42, 43]


def test_sample_returns_the_current_object_or_none(server, prefix):
    channel = f"{prefix}:a"
    server.addRecord(channel, pva.PvObject(FRAME, {"uniqueId": 5, "value": 2.5}))
    r, _ = make_receiver(channel)
    sample = r.sample(timeout=5)
    assert sample is not None
    assert (sample["uniqueId"], sample["value"]) == (5, 2.5)
    assert set(sample.keys()) == {"uniqueId", "value"}
    publish(server, channel, [6])
    assert r.sample(timeout=5)["uniqueId"] == 6
    absent, _ = make_receiver(f"{prefix}:nobody")
    assert absent.sample(timeout=0.3) is None


def test_source_id_reads_the_current_id_or_none(server, prefix):
    channel = f"{prefix}:a"
    server.addRecord(channel, frame(17))
    r, _ = make_receiver(channel)
    assert r.source_id(timeout=5) == 17
    publish(server, channel, [18])
    assert r.source_id(timeout=5) == 18
    absent, _ = make_receiver(f"{prefix}:nobody")
    assert absent.source_id(timeout=0.3) is None
    server.addRecord(f"{prefix}:noid", pva.PvObject({"value": pva.DOUBLE}, {}))
    no_id, _ = make_receiver(f"{prefix}:noid")
    assert no_id.source_id(timeout=5) is None
    server.addRecord(f"{prefix}:text", pva.PvObject({"uniqueId": pva.STRING}, {"uniqueId": "7"}))
    text_id, _ = make_receiver(f"{prefix}:text")
    assert text_id.source_id(timeout=5) is None


def test_reconnects_after_the_record_comes_back_and_skips_its_first_update(server, prefix):
    channel = f"{prefix}:a"
    r, delivered = started(server, channel)
    publish(server, channel, range(1, 11))
    drive([r], lambda: r.n_received == 11, "11 updates")
    server.removeRecord(channel)
    drive([r], lambda: not r.connected, "the receiver to see the record go")
    assert r.n_connects == 1
    server.addRecord(channel, frame(10))
    drive([r], lambda: r.connected and r.n_skipped == 2, "the new connection's first update")
    # (A loaded machine can delay that first update past the receiver's patience: it
    # then subscribes once more, and skips that connection's first update too.)
    assert r.n_connects >= 2
    publish(server, channel, range(11, 21))
    drive([r], lambda: delivered.ids[-1:] == [20], "ids up to 20")
    # The first update of each connection that sent one.
    assert 2 <= r.n_skipped <= r.n_connects
    assert delivered.ids == list(range(1, 21))
    assert (r.n_errors, r.tracker.n_missed, r.tracker.n_restarts) == (0, 0, 0)


def test_set_skip_initial_applies_from_the_next_connection(server, prefix):
    channel = f"{prefix}:a"
    r, delivered = started(server, channel)
    r.set_skip_initial(3)
    publish(server, channel, [1, 2])
    drive([r], lambda: r.n_received == 3, "3 updates")
    assert delivered.ids == [1, 2]
    server.removeRecord(channel)
    drive([r], lambda: not r.connected, "the receiver to see the record go")
    server.addRecord(channel, frame(2))
    drive([r], lambda: r.n_received == 4, "the new connection's first update")
    publish(server, channel, range(3, 9))
    drive([r], lambda: delivered.ids[-1:] == [8], "ids up to 8")
    # 1 + 3 skipped (a loaded machine may add one subscription, whose first update
    # is skipped too).
    assert r.n_skipped in (4, 5) and r.n_received == 6 + r.n_skipped
    assert delivered.ids == [1, 2, 5, 6, 7, 8]


def test_a_receiver_started_before_its_source_connects_when_it_appears(server, prefix):
    channel = f"{prefix}:late"
    r, delivered = make_receiver(channel)
    r.start()
    drive([r], lambda: r._generation >= 2, "the receiver to probe on a fresh channel")
    assert not r.connected and r.n_received == 0
    server.addRecord(channel, frame(0))
    drive([r], lambda: r.connected and r.n_received == 1, "the source's first update")
    publish(server, channel, [1, 2, 3])
    drive([r], lambda: r.n_received == 4, "4 updates")
    assert delivered.ids == [1, 2, 3]


def test_reset_stats_zeroes_the_counts_and_counting_goes_on(server, prefix):
    channel = f"{prefix}:a"
    r, delivered = started(server, channel)
    publish(server, channel, [1, 2, 4])
    drive([r], lambda: r.n_received == 4, "4 updates")
    assert r.tracker.n_missed == 1
    r.reset_stats()
    assert (r.n_received, r.n_skipped, r.n_errors, r.tracker.n_missed) == (0, 0, 0, 0)
    assert r.n_overruns == 0
    publish(server, channel, [5, 6])
    drive([r], lambda: r.n_received == 2, "2 updates after the reset")
    assert delivered.ids == [1, 2, 4, 5, 6]
    assert (r.n_skipped, r.tracker.n_missed) == (0, 0)


def test_nothing_is_delivered_after_stop(server, prefix):
    channel = f"{prefix}:a"
    r, delivered = started(server, channel)
    publish(server, channel, [1, 2])
    drive([r], lambda: r.n_received == 3, "3 updates")
    r.stop()
    witness, witnessed = make_receiver(channel)
    witness.start()
    drive([witness], lambda: witness.n_received >= 1, "the witness's first update")
    publish(server, channel, [3, 4, 5])
    drive([witness], lambda: witness.n_received == 4, "the witness to get 3 more updates")
    r.supervise()  # a stopped receiver does not subscribe again
    assert witnessed.ids == [3, 4, 5]
    assert delivered.ids == [1, 2] and r.n_received == 3


DISTRIBUTED = "record[queueSize=100]field(_[pydistributor=updates:1])"


@pytest.fixture
def own_server():
    """A PvaServer of the test's own: the distributor's groups are the server's, shared
    by all its records (two records monitored in one group share its turns)."""
    s = pva.PvaServer()
    yield s
    s.removeAllRecords()


def test_distributor_against_a_pvaserver_never_calls_on_fatal(own_server, prefix):
    """A PvaServer has the distributor plugin: the stream flows and nothing is fatal,
    also once the receiver has been running past the distributor check's time."""
    channel = f"{prefix}:a"
    own_server.addRecord(channel, frame(0))
    fatal: list[str] = []
    r, delivered = make_receiver(
        channel, DISTRIBUTED, distributor="pydistributor", on_fatal=fatal.append
    )
    r.start()
    drive([r], lambda: r.n_received >= 1, "the first update")
    publish(own_server, channel, range(1, 11))
    drive([r], lambda: r.n_received == 11, "11 updates")
    until = time.monotonic() + 2 * receiver_module.DISTRIBUTOR_CHECK_AFTER
    publish(own_server, channel, [11])
    drive([r], lambda: time.monotonic() > until and r.n_received == 12, "the check's time")
    assert fatal == []
    assert delivered.ids == list(range(1, 12))


def test_distributor_check_of_an_absent_pvaserver_source_is_not_fatal(own_server, prefix):
    """The check runs while the source is absent (it concludes nothing), then the
    source appears: frames flow and on_fatal is never called."""
    channel = f"{prefix}:late"
    fatal: list[str] = []
    r, delivered = make_receiver(
        channel, DISTRIBUTED, distributor="pydistributor", on_fatal=fatal.append
    )
    r.start()
    drive(
        [r],
        lambda: r._distributor_check is not None and not r._distributor_check.is_alive(),
        "the distributor check to run once on the absent source",
    )
    own_server.addRecord(channel, frame(0))
    drive([r], lambda: r.n_received >= 1, "the source's first update")
    publish(own_server, channel, range(1, 6))
    drive([r], lambda: r.n_received == 6, "6 updates")
    assert fatal == []
    assert delivered.ids == [1, 2, 3, 4, 5]


def test_distributor_against_a_p4p_source_is_fatal_once_naming_the_way_out(prefix):
    channel = f"{prefix}:p4p"
    fatal: list[str] = []
    with P4pSource(channel) as source:
        r, delivered = make_receiver(
            channel, DISTRIBUTED, distributor="pydistributor", on_fatal=fatal.append
        )
        r.start()
        drive([r], lambda: fatal, "on_fatal", timeout=15)
        # Without the distributor the same source streams: the line is about the plugin.
        plain, plain_ids = make_receiver(channel)
        plain.start()
        drive([plain], lambda: plain.n_received >= 1, "the plain receiver's first update")
        source.post(1, 5)
        drive([r, plain], lambda: plain.n_received == 6, "5 frames at the plain receiver")
    assert plain_ids.ids == [1, 2, 3, 4, 5]
    assert len(fatal) == 1
    line = fatal[0]
    assert "\n" not in line
    assert channel in line and "pvapy-mirror-server" in line and "'pydistributor'" in line
    assert delivered.ids == [] and r.n_received == 0
