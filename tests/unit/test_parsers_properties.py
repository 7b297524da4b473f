"""Property-based tests (hypothesis) for every parser a user's text goes through.

Each parser is held to the same two rules: what it accepts it reads exactly (round
trips, equivalence with Python's own meaning), and anything else fails with the
one kind of error the command turns into one line and status 2 — never another
exception. The mirror's channel maps have their own properties in
``test_channel_map.py``.
"""

from __future__ import annotations

import argparse
import json
import re

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from pvhpc.endpoints import Endpoint, parse_channel_list
from pvhpc.errors import UsageError
from pvhpc.ids import parse_id_list
from pvhpc.options.common import json_object
from pvhpc.request import monitor_request
from pvhpc.simulator import MetadataPv, parse_metadata_pvs

# Channel names as users write them: EPICS-ish characters, no separators.
_name = st.text(
    alphabet=st.sampled_from("abcdefghijklmnopqrstuvwxyzABCXYZ0123456789:_-.$"),
    min_size=1,
    max_size=20,
).filter(lambda s: "://" not in s)
_space = st.sampled_from(["", " ", "  ", "\t"])


def one_line(exc: Exception) -> str:
    text = str(exc)
    assert "\n" not in text, text
    return text


# -- id lists: 1,2,5 and range(first,last+1[,step]) ----------------------------------


@given(st.integers(-50, 50), st.integers(-50, 50), st.integers(-7, 7).filter(bool), _space)
@settings(max_examples=300, deadline=None)
def test_range_means_what_python_means(first, stop, step, pad):
    text = f"range({pad}{first},{pad}{stop},{step}{pad})"
    expected = list(range(first, stop, step))
    if expected:
        assert parse_id_list(text) == expected
    else:
        with pytest.raises(UsageError, match="gives no ids"):
            parse_id_list(text)


@given(st.integers(-50, 50), st.integers(-50, 50))
def test_range_with_two_or_one_arguments(a, b):
    for text, expected in ((f"range({a},{b})", range(a, b)), (f"range({b})", range(b))):
        if expected:
            assert parse_id_list(text) == list(expected)
        else:
            with pytest.raises(UsageError):
                parse_id_list(text)


@given(st.lists(st.integers(-(10**6), 10**6), min_size=1, max_size=30, unique=True), st.data())
def test_id_lists_round_trip_with_spaces(ids, data):
    text = ",".join(data.draw(_space) + str(i) + data.draw(_space) for i in ids)
    assert parse_id_list(text, "--producer-id-list") == ids


@given(st.lists(st.integers(0, 20), min_size=2, max_size=10).filter(lambda v: len(set(v)) < len(v)))
def test_repeated_ids_are_refused(ids):
    with pytest.raises(UsageError, match="repeats an id"):
        parse_id_list(",".join(map(str, ids)))


@given(st.text(alphabet="range(),0123456789- x.", max_size=30))
@settings(max_examples=1000, deadline=None)
def test_id_list_junk_only_raises_a_one_line_usage_error_naming_the_option(text):
    try:
        ids = parse_id_list(text, "--consumer-id-list")
    except UsageError as exc:
        assert one_line(exc).startswith("--consumer-id-list: ")
        return
    assert ids and len(set(ids)) == len(ids) and all(type(i) is int for i in ids)


# -- consumer/collector metadata channels: pva://x,ca://y,z ---------------------------


_protocol = st.sampled_from(["pva", "ca", "PVA", "Ca", ""])


def parse_metadata_channels(text):
    return parse_channel_list(text, "--metadata-channels")


@given(
    st.lists(st.tuples(_protocol, _name), min_size=1, max_size=8, unique_by=lambda t: t[1]),
    st.data(),
)
@settings(max_examples=300, deadline=None)
def test_metadata_channels_round_trip(items, data):
    text = ",".join(
        data.draw(_space) + (f"{p}://{n}" if p else n) + data.draw(_space) for p, n in items
    )
    assert parse_metadata_channels(text) == [Endpoint(n, (p or "ca").lower()) for p, n in items]


@given(st.text(max_size=40))
@settings(max_examples=500, deadline=None)
def test_metadata_channels_junk_only_raises_usage_error(text):
    try:
        result = parse_metadata_channels(text)
    except UsageError as exc:
        assert one_line(exc).startswith("--metadata-channels: ")
        return
    for e in result:
        assert e.protocol in ("pva", "ca") and e.name and e.name == e.name.strip()


@given(st.sampled_from(["http", "ftp", "pv", "caa", "x"]), _name)
def test_metadata_channels_unknown_protocol_is_named(proto, name):
    with pytest.raises(UsageError, match=re.escape(f"{proto}://{name}")):
        parse_metadata_channels(f"pva://ok,{proto}://{name}")


# -- simulator metadata PVs: the same syntax, names must be distinct ------------------


@given(st.lists(st.tuples(_protocol, _name), min_size=1, max_size=8, unique_by=lambda t: t[1]))
@settings(max_examples=300, deadline=None)
def test_simulator_metadata_pvs_round_trip(items):
    text = ",".join(f"{p}://{n}" if p else n for p, n in items)
    assert parse_metadata_pvs(text) == [MetadataPv(n, (p or "ca").lower()) for p, n in items]


@given(_name, _protocol, _protocol)
def test_simulator_metadata_pv_given_twice_is_refused(name, p1, p2):
    text = ",".join(f"{p}://{name}" if p else name for p in (p1, p2))
    with pytest.raises(UsageError, match="twice"):
        parse_metadata_pvs(text)


@given(st.text(max_size=40))
@settings(max_examples=500, deadline=None)
def test_simulator_metadata_pvs_junk_only_raises_usage_error(text):
    try:
        result = parse_metadata_pvs(text)
    except UsageError as exc:
        assert one_line(exc).startswith("--metadata-pv: ")
        return
    names = [m.name for m in result]
    assert len(set(names)) == len(names)
    assert all(m.protocol in ("pva", "ca") and m.name.strip() == m.name for m in result)


# -- the monitor request builder --------------------------------------------------------

_word = st.text(alphabet="abcdefgXYZ0189_", min_size=1, max_size=8)
_field_name = st.text(alphabet="abcdefgxyz", min_size=1, max_size=8)


@given(
    queue=st.integers(-5, 10**6),
    plugin=st.sampled_from(["pydistributor", "distributor"]),
    group=st.none() | _word,
    set_name=st.none() | _word,
    trigger=st.none() | _word,
    updates=st.none() | st.integers(-3, 1000),
    fields=st.none() | st.lists(_field_name, min_size=1, max_size=5, unique=True),
    wrap=st.booleans(),
    oid=_field_name,
)
@settings(max_examples=500, deadline=None)
def test_monitor_request_has_exactly_the_parts_given(
    queue, plugin, group, set_name, trigger, updates, fields, wrap, oid
):
    field_request = None
    if fields is not None:
        field_request = ",".join(fields)
        if wrap:
            field_request = f"field({field_request})"
    request = monitor_request(queue, plugin, group, set_name, trigger, updates, field_request, oid)

    # The queue part comes first, only for a positive size.
    if queue > 0:
        assert request.startswith(f"record[queueSize={queue}]")
        rest = request[len(f"record[queueSize={queue}]") :]
    else:
        assert "record[" not in request
        rest = request
    assert rest.startswith("field(") and rest.endswith(")")
    inner = rest[len("field(") : -1]

    dist = [f"{k}:{v}" for k, v in (("group", group), ("set", set_name), ("trigger", trigger)) if v]
    if updates is not None and updates > 0:
        dist.append(f"updates:{updates}")
    if dist:
        # The distributor needs the whole structure: the field request is dropped.
        assert inner == f"_[{plugin}={';'.join(dist)}]"
    elif fields:
        listed = inner.split(",")
        assert listed.count(oid) == 1, "the object id field is requested exactly once"
        assert [f for f in listed if f != oid] == [f for f in fields if f != oid]
    else:
        assert inner == ""


# -- JSON objects: --processor-args, and configure's args on the control channel ---------

_json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@given(st.dictionaries(st.text(max_size=10), _json_value, max_size=6))
@settings(max_examples=300, deadline=None)
def test_processor_args_read_any_json_object(obj):
    assert json_object("--processor-args")(json.dumps(obj)) == obj


@given(_json_value.filter(lambda v: not isinstance(v, dict)))
def test_processor_args_refuse_json_that_is_not_an_object(value):
    with pytest.raises(
        argparse.ArgumentTypeError, match="--processor-args: expected a JSON object"
    ):
        json_object("--processor-args")(json.dumps(value))


@given(st.text(max_size=40))
@settings(max_examples=500, deadline=None)
def test_processor_args_junk_only_raises_argument_type_error(text):
    try:
        value = json_object("--processor-args")(text)
    except argparse.ArgumentTypeError as exc:
        assert one_line(exc).startswith("--processor-args: ")
        return
    assert isinstance(value, dict)


@pytest.fixture(scope="module")
def consumer():
    """A consumer built in this process (its server is up, its monitor never started)."""
    from pvhpc.processor import UserDataProcessor, adapt_processor
    from pvhpc.runtime.config import StageConfig
    from pvhpc.runtime.consumer import Consumer

    config = StageConfig(
        kind="consumer", stage_id=1, input_channel="pvhpc:test:nowhere", receiver_queue_size=10
    )
    c = Consumer(config, adapt_processor(UserDataProcessor()))
    yield c
    c.server.stop()


def _whole(value) -> int:
    """The integer an accepted runtime value stands for, exactly (a float through
    ``float`` would round ints above 2**53)."""
    if isinstance(value, float):
        return int(value)
    return int(str(value).strip())


def runtime_state(c) -> tuple:
    return (c.queue.max_length, c.receiver.skip_initial, c.tracker.offset, c.stop_event.is_set())


_odd_value = (
    st.integers(-(10**20), 10**20)
    | st.floats()
    | st.booleans()
    | st.none()
    | st.text(max_size=6)
    | st.sampled_from(["25", " 3 ", "-1", "0", "1e3", "x"])
    | st.lists(st.integers(), max_size=2)
)
_runtime_keys = st.sampled_from(["receiverQueueSize", "skipInitialUpdates", "objectIdOffset", "x"])
_configure_args = (
    st.text(max_size=30)
    | st.dictionaries(_runtime_keys, _odd_value, max_size=3).map(json.dumps)
    | _json_value.map(json.dumps)
)


@given(_configure_args)
@settings(max_examples=400, deadline=None)
def test_configure_applies_all_runtime_keys_or_none(consumer, args):
    before = runtime_state(consumer)
    message = consumer.handle_command("configure", args)
    after = runtime_state(consumer)
    assert "\n" not in message
    if message.startswith("Configured"):
        config = json.loads(args)
        if "receiverQueueSize" in config:
            assert after[0] == _whole(config["receiverQueueSize"])
        if "objectIdOffset" in config:
            assert after[2] == _whole(config["objectIdOffset"]) > 0
        return
    assert "nothing changed" in message, message
    assert after == before, f"{args!r} was refused ({message}) but changed {before} -> {after}"


@given(st.text(max_size=20))
@settings(max_examples=300, deadline=None)
def test_unknown_commands_change_nothing_and_say_why(consumer, command):
    assume(command.strip() not in ("configure", "reset_stats", "get_stats", "stop"))
    before = runtime_state(consumer)
    message = consumer.handle_command(command, "{}")
    assert runtime_state(consumer) == before
    assert "known commands: configure, reset_stats, get_stats, stop, restart" in message
