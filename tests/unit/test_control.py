"""The control commands (:mod:`pvhpc.runtime.control`) of a consumer and a collector built
in this process: each command's answer, what it changes, and what it leaves alone.

The stages' servers are up (the status channel is read back with a pvaccess get);
their monitors are never started: objects are handed to the stage as its monitor
thread would.
"""

from __future__ import annotations

import json

import pvaccess as pva
import pytest

from harness import pv_get
from pvhpc.processor import UserDataProcessor, adapt_processor
from pvhpc.runtime.collector import Collector
from pvhpc.runtime.config import StageConfig
from pvhpc.runtime.consumer import Consumer

KNOWN = "known commands: configure, reset_stats, get_stats, stop, restart"


class RecordingProcessor(UserDataProcessor):
    """Records configure() and resetStats() calls; configure raises if told to."""

    def __init__(self, configDict=None):
        super().__init__(configDict)
        self.configured: list[dict] = []
        self.n_resets = 0
        self.refuse: Exception | None = None

    def configure(self, configDict):
        if self.refuse is not None:
            raise self.refuse
        self.configured.append(configDict)

    def process(self, pvObject):
        return pvObject

    def resetStats(self):
        self.n_resets += 1


def frame(oid: int) -> pva.PvObject:
    return pva.PvObject({"uniqueId": pva.INT}, {"uniqueId": oid})


@pytest.fixture
def make_stage(prefix):
    """Build a consumer (or collector) with a RecordingProcessor and a status channel."""
    stages = []

    def make(kind: str = "consumer", **options):
        config = StageConfig(
            kind=kind,
            stage_id=1,
            input_channel=f"{prefix}:nowhere",
            status_channel=f"{prefix}:{kind}:status",
            **{"receiver_queue_size": 10, **options},
        )
        processor = adapt_processor(RecordingProcessor())
        if kind == "collector":
            channels = [f"{prefix}:p{i}" for i in (1, 2, 3)]
            stage = Collector(config, processor, [1, 2, 3], channels, 10)
        else:
            stage = Consumer(config, processor)
        stage.server.setup_status(config.status_channel, stage.stats())
        stages.append(stage)
        return stage

    yield make
    for stage in stages:
        stage.server.stop()


def consumer_state(c) -> tuple:
    return (
        c.queue.max_length if c.queue is not None else None,
        c.receiver.skip_initial,
        c.tracker.offset,
        c.stop_event.is_set(),
        list(c.processor.configured),
    )


def test_stop_answers_and_asks_the_run_loop_to_stop(make_stage):
    c = make_stage()
    assert c.handle_command("stop", "") == "Stopping"
    assert c.stop_event.is_set()
    assert c.stop_reason == "stop command on the control channel"
    assert c.handle_command(" stop ", "{}") == "Stopping"
    assert c.stop_reason == "stop command on the control channel"


def test_restart_needs_a_supervising_parent(make_stage):
    c = make_stage()
    message = c.handle_command("restart", "")
    assert message.startswith("restart: this stage has no supervising parent")
    assert message.endswith("nothing changed") and not c.stop_event.is_set()
    c.track_progress(lambda message: None)  # as a child of -nc > 1 / --restart-failed
    assert c.handle_command("restart", "").startswith("Restarting")
    assert c.stop_event.is_set() and c.restart_requested


def test_get_stats_publishes_the_current_statistics(make_stage):
    c = make_stage()
    channel = c.config.status_channel
    assert pv_get(channel)["objectId"] == 0
    for i in (1, 2, 3):
        c.process_one(frame(i), i)
    assert c.handle_command("get_stats", "") == "Statistics published on the status channel"
    status = pv_get(channel)
    assert status["objectId"] == 1
    assert status["consumerId"] == 1
    assert status["processorStats"]["nProcessed"] == 3


def test_reset_stats_zeroes_every_count_and_publishes(make_stage):
    c = make_stage()
    for i in (1, 2, 3):
        c.queue.put(frame(i))
        c.process_one(frame(i), i)
    c.tracker.update(1)
    c.tracker.update(3)
    c.receiver.n_received = 3  # as its monitor thread counts
    assert c.tracker.n_missed == 1
    assert c.handle_command("reset_stats", "") == "Statistics reset"
    counts = (c.n_processed, c.queue.n_received, c.receiver.n_received, c.tracker.n_missed)
    assert counts == (0, 0, 0, 0)
    assert c.queue.n_queued == 3  # objects are kept, only counts are zeroed
    assert c.processor.n_resets == 1
    status = pv_get(c.config.status_channel)
    assert status["objectId"] == 1
    assert status["processorStats"]["nProcessed"] == 0
    assert status["receiverStats"]["nReceived"] == 0


def test_configure_applies_every_runtime_key_and_tells_the_processor(make_stage):
    c = make_stage()
    args = {"receiverQueueSize": 5, "skipInitialUpdates": 2, "objectIdOffset": 3, "x": 1}
    message = c.handle_command("configure", json.dumps(args))
    assert message == (
        f"Configured: {json.dumps(args)} "
        "(receiverQueueSize=5, skipInitialUpdates=2, objectIdOffset=3)"
    )
    assert consumer_state(c) == (5, 2, 3, False, [args])


@pytest.mark.parametrize(
    "value,expected", [("25", 25), (" 7 ", 7), (4.0, 4), (0, 0), (10**20, 10**20)]
)
def test_configure_accepts_whole_numbers_and_their_strings(make_stage, value, expected):
    c = make_stage()
    message = c.handle_command("configure", json.dumps({"receiverQueueSize": value}))
    assert message.startswith("Configured: ") and f"(receiverQueueSize={expected})" in message
    assert c.queue.max_length == expected


def test_configure_without_runtime_keys_only_tells_the_processor(make_stage):
    c = make_stage()
    before = consumer_state(c)
    assert c.handle_command("configure", '{"threshold": 0.5}') == 'Configured: {"threshold": 0.5}'
    assert consumer_state(c)[:4] == before[:4]
    assert c.processor.configured == [{"threshold": 0.5}]


@pytest.mark.parametrize(
    "args,why",
    [
        ({"receiverQueueSize": 5, "objectIdOffset": 0}, "objectIdOffset must be >= 1, got 0"),
        ({"receiverQueueSize": -1}, "receiverQueueSize must be >= 0, got -1"),
        (
            {"objectIdOffset": 3, "skipInitialUpdates": "x"},
            "skipInitialUpdates must be an integer, got 'x'",
        ),
        ({"receiverQueueSize": 2.5}, "receiverQueueSize must be an integer, got 2.5"),
        ({"receiverQueueSize": True}, "receiverQueueSize must be an integer, got True"),
        ({"skipInitialUpdates": None}, "skipInitialUpdates must be an integer, got None"),
        ({"objectIdOffset": [2]}, "objectIdOffset must be an integer, got [2]"),
    ],
)
def test_a_bad_runtime_key_changes_nothing(make_stage, args, why):
    c = make_stage()
    before = consumer_state(c)
    message = c.handle_command("configure", json.dumps(args))
    assert message == f"configure: {why}; nothing changed"
    assert consumer_state(c) == before


def test_receiver_queue_size_on_a_stage_without_a_queue_changes_nothing(make_stage):
    c = make_stage(receiver_queue_size=-1)
    before = consumer_state(c)
    message = c.handle_command("configure", '{"receiverQueueSize": 5, "skipInitialUpdates": 4}')
    assert message == (
        "configure: receiverQueueSize: this stage runs without a receiver queue "
        "(start it with --receiver-queue-size >= 0); nothing changed"
    )
    assert consumer_state(c) == before


def test_a_processor_refusing_its_configuration_is_reported(make_stage):
    c = make_stage()
    c.processor.refuse = ValueError("threshold must be below 1")
    message = c.handle_command("configure", '{"threshold": 2}')
    assert message == (
        "configure: processor rejected {'threshold': 2}: ValueError: threshold must be below 1"
    )
    # Runtime keys are applied before the processor is asked; the answer says so.
    message = c.handle_command("configure", '{"receiverQueueSize": 7, "threshold": 2}')
    assert message == (
        "configure: processor rejected {'receiverQueueSize': 7, 'threshold': 2}: "
        "ValueError: threshold must be below 1 (applied before it: receiverQueueSize=7)"
    )
    assert c.queue.max_length == 7


@pytest.mark.parametrize(
    "args,message",
    [
        ("{bad", "configure: args is not valid JSON ("),
        ('{"a": 1', "configure: args is not valid JSON ("),
        ("[1, 2]", 'configure: args must be a JSON object such as {"x": 100}; nothing changed'),
        ('"text"', 'configure: args must be a JSON object such as {"x": 100}; nothing changed'),
        ("", 'configure: args must be a JSON object such as {"x": 100}; nothing changed'),
        ("   ", 'configure: args must be a JSON object such as {"x": 100}; nothing changed'),
    ],
)
def test_configure_args_that_are_no_json_object_change_nothing(make_stage, args, message):
    c = make_stage()
    before = consumer_state(c)
    answer = c.handle_command("configure", args)
    assert answer.startswith(message) and answer.endswith("; nothing changed")
    assert "\n" not in answer
    assert consumer_state(c) == before


@pytest.mark.parametrize(
    "command,answer",
    [
        ("start", f"Unknown command 'start'; {KNOWN}. Nothing changed"),
        ("STOP", f"Unknown command 'STOP'; {KNOWN}. Nothing changed"),
        ("reset", f"Unknown command 'reset'; {KNOWN}. Nothing changed"),
        ("", f"No command given; {KNOWN}. Nothing changed"),
        ("   ", f"No command given; {KNOWN}. Nothing changed"),
        (None, f"No command given; {KNOWN}. Nothing changed"),
    ],
)
def test_unknown_and_empty_commands_change_nothing(make_stage, command, answer):
    c = make_stage()
    c.process_one(frame(1), 1)
    before = consumer_state(c)
    assert c.handle_command(command, '{"receiverQueueSize": 1}') == answer
    assert consumer_state(c) == before
    assert c.n_processed == 1
    assert pv_get(c.config.status_channel)["objectId"] == 0  # nothing was published


def test_collector_cache_size_is_a_runtime_key_of_collectors(make_stage):
    c = make_stage("collector")
    assert c.cache.size == 10
    message = c.handle_command("configure", '{"collectorCacheSize": 50}')
    assert message == 'Configured: {"collectorCacheSize": 50} (collectorCacheSize=50)'
    assert c.cache.size == 50
    # Never below one object per producer.
    message = c.handle_command("configure", '{"collectorCacheSize": 1}')
    assert message.endswith("(collectorCacheSize=3)") and c.cache.size == 3
    assert c.processor.configured == [{"collectorCacheSize": 50}, {"collectorCacheSize": 1}]


def test_collector_runtime_keys_reach_every_receiver_and_the_cache(make_stage):
    c = make_stage("collector")
    args = {"skipInitialUpdates": 4, "objectIdOffset": 2, "receiverQueueSize": 3}
    message = c.handle_command("configure", json.dumps(args))
    assert message == (
        f"Configured: {json.dumps(args)} "
        "(receiverQueueSize=3, skipInitialUpdates=4, objectIdOffset=2)"
    )
    assert [r.skip_initial for r in c.receivers] == [4, 4, 4]
    assert (c.tracker.offset, c.cache.step, c.queue.max_length) == (2, 2, 3)


def test_a_bad_collector_cache_size_changes_nothing(make_stage):
    c = make_stage("collector")
    message = c.handle_command("configure", '{"objectIdOffset": 5, "collectorCacheSize": "big"}')
    assert message == "configure: collectorCacheSize must be an integer, got 'big'; nothing changed"
    assert (c.cache.size, c.tracker.offset, c.processor.configured) == (10, 1, [])


def test_collector_cache_size_is_no_runtime_key_of_a_consumer(make_stage):
    c = make_stage()
    before = consumer_state(c)
    message = c.handle_command("configure", '{"collectorCacheSize": "big"}')
    assert message == 'Configured: {"collectorCacheSize": "big"}'
    assert consumer_state(c)[:4] == before[:4]
