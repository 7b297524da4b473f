"""pvhpc.dashboard.access: where the dashboard listens, the token, read-only."""

from __future__ import annotations

import pytest

from pvhpc.dashboard.access import DEFAULT_HOST, Access, load_token, parse_listen
from pvhpc.errors import UsageError


@pytest.mark.parametrize(
    "text, expected",
    [
        ("8080", (DEFAULT_HOST, 8080)),
        ("0", (DEFAULT_HOST, 0)),
        ("0.0.0.0:9000", ("0.0.0.0", 9000)),
        ("localhost:1", ("localhost", 1)),
        ("[::1]:8080", ("::1", 8080)),
        (" 127.0.0.2:80 ", ("127.0.0.2", 80)),
    ],
)
def test_listen_address(text, expected):
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["", "http", "host:", ":80", "80:host", "1:2:3", "99999", "a b:1"])
def test_bad_listen_address_names_the_option(text):
    with pytest.raises(UsageError, match="--web"):
        parse_listen(text)


def test_token_file(tmp_path):
    path = tmp_path / "token"
    path.write_text("  s3cret-token-value  \nsecond line\n")
    assert load_token(str(path)) == "s3cret-token-value"
    assert Access.make(str(path), False).token == "s3cret-token-value"
    path.write_text("short\n")
    with pytest.raises(UsageError, match="at least 8"):
        load_token(str(path))
    with pytest.raises(UsageError, match="not a file"):
        load_token(str(tmp_path / "missing"))


def test_refusals():
    access = Access("right-token-1")
    assert access.refusal("right-token-1") is None
    assert "needs the dashboard's token" in access.refusal(None)
    assert "needs the dashboard's token" in access.refusal("")
    assert access.refusal("wrong-token") == "refused: wrong token"
    read_only = Access.make(None, True)
    assert read_only.token is None
    assert "read-only" in read_only.refusal("right-token-1")


def test_made_tokens_differ_and_are_long():
    a, b = Access.make(None, False), Access.make(None, False)
    assert a.token != b.token and len(a.token) >= 20
