"""A stage's own channels (:mod:`pvhpc.channels`): status, control and output records on a
real PvaServer in the test process, read back with pvaccess gets and monitors (and, for
the control record, written by p4p too)."""

from __future__ import annotations

import json
import logging
import threading

import numpy as np
import pvaccess as pva
import pytest

from harness import control, pv_get, wait_for
from p4p_peer import p4p_put
from pvhpc.channels import DataPublisher, StageServer, conform, pva_structure, pva_type_for

logger = logging.getLogger("pvhpc.test")


class Seconds(float):
    """A float subclass, as processors' statistics often are (FloatWithUnits)."""


@pytest.fixture
def server():
    s = StageServer("consumerId", 3, logger)
    yield s
    s.stop()


def structure_of(pv) -> dict:
    return pv.getStructureDict()


# -- types of statistics ------------------------------------------------------------


@pytest.mark.parametrize(
    "value,ftype",
    [
        (True, pva.BOOLEAN),
        (5, pva.LONG),
        (-(2**40), pva.LONG),
        (1.5, pva.DOUBLE),
        (Seconds(2.0), pva.DOUBLE),
        (np.int64(5), pva.LONG),
        (np.uint32(5), pva.LONG),
        (np.float64(0.5), pva.DOUBLE),
        (np.float32(0.5), pva.DOUBLE),
        ("text", pva.STRING),
        (None, pva.STRING),
        ([1, 2], pva.STRING),
    ],
)
def test_statistics_values_get_their_pva_type(value, ftype):
    assert pva_type_for(value) == ftype


def test_nested_statistics_become_structures_without_empty_ones():
    sample = {"a": 1, "b": {"c": 1.0, "d": {}}, "e": {}, "f": "x"}
    assert pva_structure(sample) == {"a": pva.LONG, "b": {"c": pva.DOUBLE}, "f": pva.STRING}
    assert pva_structure(sample, {"a": pva.UINT})["a"] == pva.UINT


def test_conform_keeps_the_structure_and_coerces_every_value():
    structure = {
        "n": pva.LONG,
        "rate": pva.DOUBLE,
        "name": pva.STRING,
        "up": pva.BOOLEAN,
        "sub": {"k": pva.UINT},
    }
    value = {
        "n": "12",
        "rate": Seconds(2.5),
        "name": None,
        "up": 1,
        "sub": "not a dict",
        "extra": 1,
    }
    out = conform(value, structure)
    assert out == {"n": 12, "rate": 2.5, "name": "", "up": True, "sub": {}}
    assert type(out["rate"]) is float
    assert conform({"n": None, "rate": None}, structure) == {"n": 0, "rate": 0.0}
    assert conform({"n": "x", "sub": {"k": [1]}}, structure) == {"n": 0, "sub": {"k": 0}}
    assert conform({"n": 7.9, "name": 5}, structure) == {"n": 7, "name": "5"}


# -- the status record ---------------------------------------------------------------


SAMPLE = {
    "inputChannel": "src:image",
    "receiverStats": {"nReceived": 0, "connected": False, "receivedRate": 0.0},
    "metadataStats": {},
    "userStats": {"seconds": Seconds(0.0), "label": "a"},
}


def test_status_record_structure_comes_from_the_first_snapshot(server, prefix):
    channel = f"{prefix}:status"
    server.setup_status(channel, SAMPLE, {"userStats": {"seconds": pva.FLOAT, "count": pva.UINT}})
    status = pv_get(channel)
    structure = structure_of(status)
    assert structure["consumerId"] == pva.UINT
    assert structure["objectId"] == pva.ULONG
    assert structure["objectTime"] == pva.DOUBLE
    assert set(structure["objectTimestamp"]) == {"secondsPastEpoch", "nanoseconds", "userTag"}
    assert structure["inputChannel"] == pva.STRING
    assert structure["receiverStats"] == {
        "nReceived": pva.LONG,
        "connected": pva.BOOLEAN,
        "receivedRate": pva.DOUBLE,
    }
    assert structure["userStats"] == {"seconds": pva.FLOAT, "count": pva.UINT}
    assert "metadataStats" not in structure  # no empty structures in PVA
    assert (status["consumerId"], status["objectId"]) == (3, 0)


def test_publish_status_counts_its_updates_and_coerces_values(server, prefix):
    channel = f"{prefix}:status"
    server.setup_status(channel, SAMPLE)
    snapshot = {
        "inputChannel": "src:image",
        "receiverStats": {"nReceived": "41", "connected": 1, "receivedRate": 3},
        "userStats": {"seconds": Seconds(1.25), "label": 7},
        "notInTheFirstSnapshot": 5,
    }
    server.publish_status(snapshot)
    status = pv_get(channel)
    assert status["objectId"] == 1
    assert status["receiverStats"] == {"nReceived": 41, "connected": True, "receivedRate": 3.0}
    assert status["userStats"] == {"seconds": 1.25, "label": "7"}
    assert "notInTheFirstSnapshot" not in status.keys()
    assert status["objectTimestamp"]["secondsPastEpoch"] == int(status["objectTime"])
    server.publish_status({"receiverStats": {"nReceived": 42}})
    status = pv_get(channel)
    assert status["objectId"] == 2
    assert status["receiverStats"]["nReceived"] == 42
    assert status["inputChannel"] == ""  # a key left out is published blank


def test_publish_status_without_a_status_channel_does_nothing(server):
    server.setup_status(None, SAMPLE)
    server.publish_status(SAMPLE)
    assert server.status_channel is None
    assert server.pva_server.getRecordNames() == []


# -- the control record ----------------------------------------------------------------


class Commands:
    """The stage's command callback: records each call, answers with what it did."""

    def __init__(self):
        self.calls: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def __call__(self, command: str, args: str) -> str:
        with self._lock:
            self.calls.append((command, args))
            n = len(self.calls)
        return f"did {command} {args} (#{n})"


@pytest.fixture
def controlled(server, prefix):
    commands = Commands()
    channel = f"{prefix}:control"
    server.setup_control(channel, commands)
    return channel, commands


def test_control_record_has_the_fields_of_the_spec(controlled):
    channel, _ = controlled
    pv = pv_get(channel)
    assert set(pv.keys()) == {
        "consumerId",
        "objectTime",
        "objectTimestamp",
        "command",
        "args",
        "statusMessage",
    }
    assert pv["consumerId"] == 3


def test_a_pvaccess_put_acts_once_and_is_answered(controlled):
    """Each put is one call: the answer to the k-th put is the k-th call's. (The
    write callback and the record's own monitor both see a processed put; only one
    of them may act on it.)"""
    channel, commands = controlled
    expected = []
    for k in range(1, 6):
        args = json.dumps({"k": k})
        expected.append(("configure", args))
        assert control(channel, "configure", args) == f"did configure {args} (#{k})"
        assert commands.calls == expected
    assert control(channel, "get_stats") == "did get_stats  (#6)"
    pv = pv_get(channel)
    assert (pv["command"], pv["statusMessage"]) == ("get_stats", "did get_stats  (#6)")


def test_the_same_command_twice_acts_twice(controlled):
    channel, commands = controlled
    assert control(channel, "reset_stats") == "did reset_stats  (#1)"
    assert control(channel, "reset_stats") == "did reset_stats  (#2)"
    assert commands.calls == [("reset_stats", "")] * 2


def test_a_p4p_put_with_wait_acts_exactly_once(controlled):
    """p4p's ``put(..., wait=True)`` asks for process=passive: the record's write
    callback is not called, the record's change is taken as the command."""
    channel, commands = controlled
    p4p_put(channel, {"command": "configure", "args": '{"y": 2}'})
    wait_for(lambda: commands.calls, 10, "the p4p put to act")
    wait_for(
        lambda: pv_get(channel)["statusMessage"] == 'did configure {"y": 2} (#1)',
        10,
        "the answer to the p4p put",
    )
    p4p_put(channel, {"command": "configure", "args": '{"y": 2}'})
    wait_for(lambda: len(commands.calls) >= 2, 10, "the second p4p put to act")
    assert control(channel, "get_stats") == "did get_stats  (#3)"
    assert commands.calls == [("configure", '{"y": 2}')] * 2 + [("get_stats", "")]


def test_a_failing_command_callback_is_answered_and_the_next_command_runs(server, prefix):
    channel = f"{prefix}:control"
    calls = []

    def on_command(command, args):
        calls.append(command)
        if command == "boom":
            raise RuntimeError("it broke")
        return "fine"

    server.setup_control(channel, on_command)
    assert control(channel, "boom") == "Command 'boom' failed: RuntimeError: it broke"
    assert control(channel, "next") == "fine"
    assert calls == ["boom", "next"]


# -- the output record -----------------------------------------------------------------


def tiled(oid: int, tile: int) -> pva.NtNdArray:
    nt = pva.NtNdArray({"tileIndexX": pva.INT})
    nt["uniqueId"] = oid
    nt["tileIndexX"] = tile
    return nt


@pytest.fixture
def publisher(server, prefix):
    return DataPublisher(server, f"{prefix}:output", logger)


def test_the_record_is_a_copy_of_the_declared_type_extra_fields_kept(publisher):
    declared = tiled(0, 4)
    publisher.create(declared)
    declared["tileIndexX"] = 99  # the record is a copy
    pv = pv_get(publisher.channel)
    assert pv["tileIndexX"] == 4
    assert set(pva.NtNdArray().keys()) < set(pv.keys())
    publisher.updateOutputChannel(tiled(5, 2))
    pv = pv_get(publisher.channel)
    assert (pv["uniqueId"], pv["tileIndexX"]) == (5, 2)
    assert (publisher.n_published, publisher.n_converted, publisher.n_replaced) == (1, 0, 0)


def test_an_object_of_another_compatible_structure_is_converted(publisher, caplog):
    publisher.create(tiled(0, 4))
    plain = pva.NtNdArray()
    plain["uniqueId"] = 7
    caplog.set_level(logging.WARNING, logger="pvhpc.test")
    for _ in range(3):
        publisher.updateOutputChannel(plain)
    pv = pv_get(publisher.channel)
    assert pv["uniqueId"] == 7
    assert "tileIndexX" in pv.keys()  # still the declared type
    assert (publisher.n_published, publisher.n_converted, publisher.n_replaced) == (3, 3, 0)
    assert caplog.text.count("is converted to the declared type") == 1


def test_an_object_with_nothing_in_common_is_not_published_blank(publisher):
    """An object sharing no field with the declared type has nothing to convert: it
    replaces the record rather than being published as an empty NTNDArray."""
    publisher.create(tiled(0, 4))
    publisher.updateOutputChannel(pva.PvObject({"result": pva.DOUBLE}, {"result": 2.5}))
    pv = pv_get(publisher.channel)
    assert pv.get() == {"result": 2.5}
    assert (publisher.n_published, publisher.n_converted, publisher.n_replaced) == (1, 0, 1)


def test_an_incompatible_object_replaces_the_record_once_and_later_ones_publish(publisher):
    publisher.create(tiled(0, 4))
    shape = {"uniqueId": pva.STRING}
    for i in range(3):
        publisher.updateOutputChannel(pva.PvObject(shape, {"uniqueId": f"frame-{i}"}))
    pv = pv_get(publisher.channel)
    assert pv.get() == {"uniqueId": "frame-2"}
    assert (publisher.n_published, publisher.n_replaced, publisher.n_errors) == (3, 1, 0)
    # A second change of structure is not a second replacement: counted as errors.
    publisher.updateOutputChannel(pva.PvObject({"uniqueId": {"x": pva.INT}}, {}))
    assert (publisher.n_published, publisher.n_replaced, publisher.n_errors) == (3, 1, 1)


def test_retype_remakes_a_guessed_record_before_anything_was_published(publisher):
    publisher.create(pva.NtNdArray(), guessed=True)
    assert "tileIndexX" not in pv_get(publisher.channel).keys()
    publisher.retype(tiled(0, 6))
    assert not publisher.guessed
    # The record has the new structure and starts empty: a frame, not its values.
    remade = pv_get(publisher.channel)
    assert "tileIndexX" in remade.keys() and remade["tileIndexX"] == 0
    publisher.retype(pva.PvObject({"other": pva.INT}, {}))  # once only
    assert pv_get(publisher.channel)["tileIndexX"] == 0


def test_retype_after_publishing_or_of_a_declared_type_changes_nothing(server, prefix):
    guessed = DataPublisher(server, f"{prefix}:guessed", logger)
    guessed.create(pva.NtNdArray(), guessed=True)
    nt = pva.NtNdArray()
    nt["uniqueId"] = 1
    guessed.updateOutputChannel(nt)
    guessed.retype(tiled(0, 6))
    assert "tileIndexX" not in pv_get(guessed.channel).keys()
    declared = DataPublisher(server, f"{prefix}:declared", logger)
    declared.create(pva.NtNdArray())
    declared.retype(tiled(0, 6))
    assert "tileIndexX" not in pv_get(declared.channel).keys()


@pytest.mark.parametrize("create_first", [True, False])
def test_publishing_from_two_threads_at_once_counts_every_object(publisher, create_first):
    """Without create() the first objects make the record, once, whichever thread wins."""
    if create_first:
        publisher.create(pva.NtNdArray())
    n = 2000
    barrier = threading.Barrier(2)

    def publish(first: int) -> None:
        nt = pva.NtNdArray()
        barrier.wait()
        for i in range(first, first + n):
            nt["uniqueId"] = i
            publisher.updateOutputChannel(nt)

    threads = [threading.Thread(target=publish, args=(k * n,)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert publisher.n_published == 2 * n
    assert (publisher.n_errors, publisher.n_replaced, publisher.n_converted) == (0, 0, 0)
    assert pv_get(publisher.channel)["uniqueId"] in (n - 1, 2 * n - 1)


def test_a_publisher_without_a_channel_publishes_nothing(server):
    publisher = DataPublisher(server, None, logger)
    publisher.create(pva.NtNdArray())
    publisher.updateOutputChannel(pva.NtNdArray())
    assert publisher.n_published == 0
    assert server.pva_server.getRecordNames() == []


def test_reset_stats_zeroes_the_publisher_counts(publisher):
    publisher.create(tiled(0, 1))
    publisher.updateOutputChannel(pva.NtNdArray())
    assert (publisher.n_published, publisher.n_converted) == (1, 1)
    publisher.reset_stats()
    assert (publisher.n_published, publisher.n_converted, publisher.n_errors) == (0, 0, 0)
