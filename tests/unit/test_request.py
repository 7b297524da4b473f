"""Monitor request strings."""

from pvhpc.request import monitor_request


def test_plain_request():
    assert monitor_request() == "field()"


def test_server_queue_and_distributor():
    assert (
        monitor_request(server_queue_size=100, updates=3, group="g", set_name="A")
        == "record[queueSize=100]field(_[pydistributor=group:g;set:A;updates:3])"
    )


def test_trigger_and_plugin_name():
    assert (
        monitor_request(distributor_plugin="distributor", trigger="uniqueId", updates=1)
        == "field(_[distributor=trigger:uniqueId;updates:1])"
    )


def test_field_request_always_has_object_id():
    assert monitor_request(field_request="value,dimension") == "field(value,dimension,uniqueId)"
    assert (
        monitor_request(field_request="field(objectId)", oid_field="objectId") == "field(objectId)"
    )


def test_field_request_ignored_with_distributor():
    assert monitor_request(field_request="value", updates=1) == "field(_[pydistributor=updates:1])"


def test_a_consumer_without_a_group_names_it_after_its_channel():
    """The distributor's groups are server-wide: the default group of two channels of
    one server would be one rotation (tests/e2e/test_distributor_groups.py)."""
    from pvhpc.runtime.config import StageConfig

    config = StageConfig("consumer", 1, input_channel="det:image", distributor_updates=1)
    assert config.monitor_request("det:image") == (
        "field(_[pydistributor=group:det:image;updates:1])"
    )
    config.distributor_group = "mine"
    assert config.monitor_request("det:image") == "field(_[pydistributor=group:mine;updates:1])"
    # Without the distributor nothing is added; without a channel, the plugin's default.
    assert (
        StageConfig("consumer", 1, input_channel="det:image").monitor_request("det:image")
        == "field()"
    )
    assert StageConfig(
        "consumer", 1, input_channel="x", distributor_updates=2
    ).monitor_request() == ("field(_[pydistributor=updates:2])")
