"""Channel lists and endpoints (:mod:`pvhpc.endpoints`): ``pva://x,ca://y,z``.

The parser's properties over random text are in ``test_parsers_properties.py``;
here each rule is shown once.
"""

from __future__ import annotations

import pytest

from pvhpc.endpoints import PROTOCOLS, Endpoint, parse_channel_list, parse_endpoint
from pvhpc.errors import UsageError

OPTION = "--metadata-channels"


@pytest.mark.parametrize(
    "text,endpoint",
    [
        ("pva://a:b", Endpoint("a:b", "pva")),
        ("ca://a:b", Endpoint("a:b", "ca")),
        ("PVA://x", Endpoint("x", "pva")),
        (" Ca ://x", Endpoint("x", "ca")),
        ("  x.VAL  ", Endpoint("x.VAL", "pva")),
        ("x", Endpoint("x", "pva")),
    ],
)
def test_parse_endpoint(text, endpoint):
    assert parse_endpoint(text, OPTION) == endpoint


def test_parse_endpoint_default_protocol():
    assert parse_endpoint("x", OPTION, "ca") == Endpoint("x", "ca")
    assert parse_endpoint("pva://x", OPTION, "ca") == Endpoint("x", "pva")


@pytest.mark.parametrize(
    "text,message",
    [
        ("http://x", "--metadata-channels: 'http://x' has unknown protocol 'http'"),
        ("://x", "--metadata-channels: '://x' has unknown protocol ''"),
        ("pva://", "--metadata-channels: 'pva://' is not pva://NAME, ca://NAME or NAME"),
        ("", "--metadata-channels: '' is not pva://NAME, ca://NAME or NAME"),
        ("a b", "--metadata-channels: 'a b' is not pva://NAME, ca://NAME or NAME"),
        ("ca://a\tb", "is not pva://NAME, ca://NAME or NAME"),
    ],
)
def test_bad_endpoints_name_the_option(text, message):
    with pytest.raises(UsageError) as info:
        parse_endpoint(text, OPTION)
    assert message in str(info.value)
    assert str(info.value).startswith(f"{OPTION}: ")


def test_endpoints_print_as_written():
    assert str(Endpoint("x")) == "x"
    assert str(Endpoint("x", "ca")) == "ca://x"
    assert PROTOCOLS == ("pva", "ca")


def test_channel_list_defaults_to_ca_as_pvapy_does():
    assert parse_channel_list("pva://a, ca://b ,c", OPTION) == [
        Endpoint("a", "pva"),
        Endpoint("b", "ca"),
        Endpoint("c", "ca"),
    ]
    assert parse_channel_list("c", "external", "pva") == [Endpoint("c", "pva")]


@pytest.mark.parametrize("text", [None, "", "   ", "\t"])
def test_no_text_is_no_channel(text):
    assert parse_channel_list(text, OPTION) == []


@pytest.mark.parametrize(
    "text,message",
    [
        ("a,a", "--metadata-channels: channel 'a' is given twice"),
        ("pva://a,ca://a", "--metadata-channels: channel 'a' is given twice"),
        ("a, a ", "--metadata-channels: channel 'a' is given twice"),
        ("a,,b", "--metadata-channels: '' is not pva://NAME"),
        ("a, ", "--metadata-channels: '' is not pva://NAME"),
        ("a,tcp://b", "--metadata-channels: 'tcp://b' has unknown protocol 'tcp'"),
    ],
)
def test_bad_channel_lists_name_the_option(text, message):
    with pytest.raises(UsageError) as info:
        parse_channel_list(text, OPTION)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_the_option_named_is_the_one_given():
    with pytest.raises(UsageError, match=r"^--metadata-pv: "):
        parse_channel_list("a,a", "--metadata-pv")
    with pytest.raises(UsageError, match=r"^external: "):
        parse_endpoint("x://y", "external")
