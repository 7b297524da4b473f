"""The mirror's channel-map parser: what it accepts, and one clear error for the rest."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pvhpc.channel_map import ChannelMapping, format_channel_map, parse_channel_map
from pvhpc.errors import UsageError


def test_seed_examples():
    assert parse_channel_map("(pvapy:image,ad:image,pva,1000)") == [
        ChannelMapping("pvapy:image", "ad:image", "pva", 1000)
    ]
    maps = parse_channel_map(
        "(pvapy:image,ad:image,pva,1000),(pvapy:x,ad:x,pva,1000),"
        "(pvapy:y,ad:y,pva,1000),(pvapy:z,ad:z,pva,1000)"
    )
    assert [m.dst for m in maps] == ["pvapy:image", "pvapy:x", "pvapy:y", "pvapy:z"]
    assert all(m.src_queue_size == 1000 and m.provider == "pva" for m in maps)


def test_defaults_and_whitespace():
    (m,) = parse_channel_map("  ( dst , src )  ")
    assert m == ChannelMapping("dst", "src", "pva", 0, 1, None)
    assert m.monitor_request() == "field()"
    assert parse_channel_map("(a,b,CA)")[0].provider == "ca"


@pytest.mark.parametrize(
    "text, request_",
    [
        ("(a,b,pva,0)", "field()"),
        ("(a,b,pva,1000)", "record[queueSize=1000]field()"),
        (
            "(a,b,pva,100,2,_[pydistributor=updates:1])",
            "record[queueSize=100]field(_[pydistributor=group:b;updates:1])",
        ),
        (
            "(a,b:c,pva,0,2,field(_[distributor=set:s;updates:2]))",
            "field(_[distributor=group:b:c;set:s;updates:2])",
        ),
        (
            "(a,b,pva,0,2,_[pydistributor=updates:1;group:mine])",
            "field(_[pydistributor=updates:1;group:mine])",
        ),
        ("(a,b,pva,0,1,field(value,timeStamp))", "field(value,timeStamp)"),
        ("(a,b,pva,0,1,value,timeStamp)", "field(value,timeStamp)"),
        ("(a,b,pva,5,1,record[queueSize=3]field())", "record[queueSize=3]field()"),
    ],
)
def test_monitor_request(text, request_):
    assert parse_channel_map(text)[0].monitor_request() == request_


def test_request_with_commas_and_parentheses_is_the_last_field():
    (m, n) = parse_channel_map("(a,b,pva,10,3,field(x,y)),(c,d)")
    assert (m.n_src_monitors, m.src_request) == (3, "field(x,y)")
    assert n == ChannelMapping("c", "d")


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("", "empty channel map"),
        ("   ", "empty channel map"),
        ("(a,b", "'(' at position 1 is never closed"),
        ("(a,b))", "')' at position 6 closes nothing"),
        (")(a,b)", "')' at position 1 closes nothing"),
        ("a,b", "expected '(' at position 1"),
        ("(a,b)(c,d)", "separate mappings with ','"),
        ("(a,b) x", "unexpected 'x'"),
        ("(a,b),", "ends with ','"),
        ("(a,b),,(c,d)", "expected '('"),
        ("()", "expected at least dst and src"),
        ("(a)", "expected at least dst and src"),
        ("(,b)", "empty dst channel name"),
        ("(a, )", "empty src channel name"),
        ("(a b,c)", "dst channel name 'a b' may not contain ' '"),
        ('(a,b"c)', "src channel name"),
        ("(a,b,xyz)", "provider 'xyz' is not pva or ca"),
        ("(a,b,)", "provider '' is not pva or ca"),
        ("(a,b,pva,ten)", "srcQueueSize 'ten' is not a non-negative integer"),
        ("(a,b,pva,-1)", "srcQueueSize '-1' is not a non-negative integer"),
        ("(a,b,pva,1.5)", "srcQueueSize '1.5'"),
        ("(a,b,pva,99999999999)", "too large"),
        ("(a,b,pva,10,2)", "nSrcMonitors '2' given without srcRequest"),
        ("(a,b,pva,10,two,field())", "nSrcMonitors 'two'"),
        ("(a,b,pva,10,0,field())", "nSrcMonitors '0' must be at least 1"),
        ("(a,b,pva,10,2, )", "empty srcRequest"),
        ("(a,b,pva,10,2,_[x)", "unbalanced brackets"),
        ("(a,b,ca,0,2,field())", "need a pva source"),
        ("(a,b),(a,c)", "'a' is mirrored twice (mappings 1 and 2)"),
    ],
)
def test_malformed_maps_give_one_clear_line(text, fragment):
    with pytest.raises(UsageError) as info:
        parse_channel_map(text)
    message = str(info.value)
    assert message.startswith("--channel-map: ")
    assert fragment in message
    assert "\n" not in message


def test_option_name_is_used_in_errors():
    with pytest.raises(UsageError, match=r"^-cm: "):
        parse_channel_map("(a", option="-cm")


_name = st.text(
    alphabet=st.sampled_from(
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:_-.*/<>;$"
    ),
    min_size=1,
    max_size=20,
)
_request = st.one_of(
    st.builds("_[pydistributor=updates:{}]".format, st.integers(1, 100)),
    st.builds(
        "field(_[pydistributor=group:{};set:s{};updates:{}])".format,
        _name.filter(lambda s: ";" not in s),
        st.integers(0, 9),
        st.integers(1, 9),
    ),
    st.just("field()"),
    st.just("field(value,timeStamp)"),
    st.just("value,timeStamp"),
    st.just("record[queueSize=10]field(uniqueId)"),
)


@st.composite
def _mapping(draw):
    dst, src = draw(_name), draw(_name)
    provider = draw(st.sampled_from(["pva", "ca"]))
    queue = draw(st.integers(0, 2**31 - 1))
    if provider == "pva" and draw(st.booleans()):
        return ChannelMapping(dst, src, provider, queue, draw(st.integers(1, 64)), draw(_request))
    if draw(st.booleans()):
        return ChannelMapping(dst, src, provider, queue, 1, draw(_request))
    return ChannelMapping(dst, src, provider, queue)


_maps = st.lists(_mapping(), min_size=1, max_size=6, unique_by=lambda m: m.dst)


@given(_maps)
@settings(max_examples=300, deadline=None)
def test_valid_maps_round_trip(mappings):
    assert parse_channel_map(format_channel_map(mappings)) == mappings


@given(_maps, st.data())
@settings(max_examples=200, deadline=None)
def test_whitespace_around_fields_and_groups_is_ignored(mappings, data):
    space = st.sampled_from(["", " ", "  ", "\t"])
    groups = []
    for m in mappings:
        fields = m.format()[1:-1]
        # Pad the fixed fields only; the request keeps its inner text.
        head = fields.split(",", 5) if m.src_request is not None else fields.split(",")
        padded = [data.draw(space) + f.strip() + data.draw(space) for f in head]
        groups.append(data.draw(space) + "(" + ",".join(padded) + ")" + data.draw(space))
    assert parse_channel_map(",".join(groups)) == mappings


@given(st.text(max_size=60))
@settings(max_examples=500, deadline=None)
def test_random_text_only_ever_raises_usage_error(text):
    try:
        result = parse_channel_map(text)
    except UsageError as exc:
        assert "\n" not in str(exc)
    else:
        assert result and all(isinstance(m, ChannelMapping) for m in result)


@given(st.text(alphabet="(),[] abpvcPVA0129-_:x", max_size=60))
@settings(max_examples=1000, deadline=None)
def test_map_like_junk_only_ever_raises_usage_error(text):
    try:
        result = parse_channel_map(text)
    except UsageError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("--channel-map: ")
    else:
        # Whatever is accepted is well formed and survives a round trip.
        assert parse_channel_map(format_channel_map(result)) == result
