"""Id lists and channel-name templates."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pvhpc.errors import UsageError
from pvhpc.ids import channel_name, parse_id_list


@pytest.mark.parametrize(
    "text,ids",
    [
        ("1,2,5", [1, 2, 5]),
        ("range(1,5)", [1, 2, 3, 4]),
        ("range(1, 9, 2)", [1, 3, 5, 7]),
        (" 7 ", [7]),
    ],
)
def test_id_lists(text, ids):
    assert parse_id_list(text) == ids


@pytest.mark.parametrize(
    "text",
    [
        "",
        "a,b",
        "1,,2",
        "range(1)x",
        "range(5,1)",
        "range(1,5,0)",
        "1,1",
        "range()",
        "range(1,2,3,4)",
    ],
)
def test_bad_id_lists_name_the_option(text):
    with pytest.raises(UsageError, match="--producer-id-list"):
        parse_id_list(text, "--producer-id-list")


@given(st.text(max_size=30))
def test_id_list_parser_only_raises_usage_errors(text):
    try:
        ids = parse_id_list(text)
    except UsageError:
        return
    assert ids and all(isinstance(i, int) for i in ids)


@given(st.lists(st.integers(-1000, 1000), min_size=1, max_size=20, unique=True))
def test_id_lists_round_trip(ids):
    assert parse_id_list(",".join(map(str, ids))) == ids


def test_channel_templates():
    assert channel_name("consumer:*:output", "consumer", "output", 3, None) == "consumer:3:output"
    assert channel_name("c:*:s", "consumer", "status", 3, "03d") == "c:003:s"
    assert channel_name("_", "collector", "control", 2, None) == "pvapy:collector:2:control"
    assert channel_name(None, "consumer", "output", 1, None) is None
    with pytest.raises(UsageError, match="--id-format-spec"):
        channel_name("c:*", "consumer", "output", 1, "zz")
