"""pvhpc.testing: the harness gives processors what the runtime gives, and records the rest."""

from __future__ import annotations

import logging

import numpy as np
import pvaccess as pva
import pytest

from pvhpc import UserDataProcessor
from pvhpc.processors.ad_image import get_frame_id, get_image
from pvhpc.testing import FakePublisher, ProcessorHarness, make_frame, make_frames


class Doubler(UserDataProcessor):
    """Publishes each frame with its pixels doubled; reads metadata queues."""

    def __init__(self, configDict=None):
        super().__init__(configDict)
        self.calls = []
        self.factor = int(self.configDict.get("factor", 2))
        self.nDoubled = 0
        self.metadata_seen = []

    def start(self):
        self.calls.append("start")
        self.attributes_at_start = {
            name: getattr(self, name)
            for name in (
                "processorId",
                "inputChannel",
                "outputChannel",
                "objectIdField",
                "pvaServer",
                "dataPublisher",
            )
        }

    def configure(self, configDict):
        self.calls.append("configure")
        self.factor = int(configDict["factor"])

    def process(self, pvObject):
        self.calls.append("process")
        for queue in self.metadataQueueMap.values():
            while True:
                try:
                    self.metadata_seen.append(queue.get(0)["value"])
                except pva.QueueEmpty:
                    break
        image = get_image(pvObject) * self.factor
        out = make_frame(image, get_frame_id(pvObject), like=pvObject)
        self.nDoubled += 1
        self.updateOutputChannel(out)
        return out

    def stop(self):
        self.calls.append("stop")

    def resetStats(self):
        self.nDoubled = 0

    def getStats(self):
        return {"nDoubled": self.nDoubled}

    def getStatsPvaTypes(self):
        return {"nDoubled": pva.UINT}


def test_runtime_attributes_and_call_order():
    h = ProcessorHarness(Doubler, {"factor": 3}, processor_id=4, object_id_field="uniqueId")
    p = h.processor
    assert p.factor == 3
    h.run(make_frames(2, (3, 3), "uint16"))
    h.configure({"factor": 5})
    h.process(make_frame(np.ones((3, 3), np.uint16), 3))
    h.stop()
    h.stop()  # once only
    assert p.calls == ["start", "process", "process", "configure", "process", "stop"]
    assert p.attributes_at_start == {
        "processorId": 4,
        "inputChannel": "pvhpc:test:input",
        "outputChannel": "pvhpc:test:output",
        "objectIdField": "uniqueId",
        "pvaServer": None,
        "dataPublisher": h.publisher,
    }
    assert isinstance(p.logger, logging.Logger) and p.logger.name.startswith("pvhpc.")
    assert h.published_ids == [1, 2, 3]
    np.testing.assert_array_equal(h.published_images[2], np.full((3, 3), 5))
    assert h.returned == h.published
    assert h.n_processed == 3 and h.stats == {"nDoubled": 3}
    assert h.user_stats_object()["nDoubled"] == 3
    h.reset_stats()
    assert h.stats == {"nDoubled": 0}


def test_context_manager_and_instance():
    proc = Doubler({"factor": 1})
    with ProcessorHarness(proc) as h:
        h.process(make_frame(np.zeros((2, 2), np.uint8), 9))
    assert proc.calls == ["start", "process", "stop"]
    with pytest.raises(TypeError, match="config only with a processor class"):
        ProcessorHarness(proc, {"factor": 2})


def test_metadata_queues_like_the_runtime():
    def md(value):
        return pva.PvObject({"value": pva.DOUBLE}, {"value": value})

    h = ProcessorHarness(Doubler, metadata={"pva://x:temp": [md(1.0), md(2.0)], "ca://y": []})
    assert set(h.processor.metadataQueueMap) == {"x:temp", "y"}
    assert all(isinstance(q, pva.PvObjectQueue) for q in h.processor.metadataQueueMap.values())
    h.process(make_frame(np.zeros((2, 2), np.uint8), 1))
    h.put_metadata("ca://y", md(3.0))
    h.put_metadata("x:temp", md(4.0))
    h.process(make_frame(np.zeros((2, 2), np.uint8), 2))
    assert sorted(h.processor.metadata_seen) == [1.0, 2.0, 3.0, 4.0]
    named = ProcessorHarness(Doubler, metadata=["pva://a", "b"], metadata_queue_size=1)
    named.put_metadata("a", md(1.0))
    with pytest.raises(pva.QueueFull):
        named.metadata_queue("pva://a").put(md(2.0), 0)


def test_errors_propagate_or_are_counted():
    class Picky(UserDataProcessor):
        def process(self, pvObject):
            if get_frame_id(pvObject) % 2 == 0:
                raise ValueError("even")
            self.updateOutputChannel(pvObject)
            return pvObject

    frames = list(make_frames(5, (2, 2)))
    with pytest.raises(ValueError, match="even"):
        ProcessorHarness(Picky).run(frames)
    h = ProcessorHarness(Picky).run(frames, catch_errors=True)
    assert h.published_ids == [1, 3, 5]
    assert [get_frame_id(f) for f, _ in h.errors] == [2, 4]
    assert h.n_processed == 5


def test_duck_typed_processor_gets_the_optional_methods():
    class Minimal:
        def __init__(self, configDict):
            pass

        def process(self, pvObject):
            self.updateOutputChannel(pvObject)

    with ProcessorHarness(Minimal) as h:
        h.process(make_frame(np.zeros((1, 1), np.uint8), 1))
    assert h.published_ids == [1] and h.stats == {}


def test_custom_object_id_field():
    frame = pva.NtNdArray({"objectId": pva.UINT})
    frame.set(make_frame(np.zeros((1, 1), np.uint8), 1))
    frame["objectId"] = 77
    h = ProcessorHarness(UserDataProcessor, object_id_field="objectId", output_channel=None)
    h.process(frame)
    assert h.published_ids == [77]
    assert h.processor.outputChannel is None


def test_user_stats_object_catches_untyped_and_ill_typed_stats():
    class Sloppy(UserDataProcessor):
        def __init__(self, configDict=None):
            super().__init__(configDict)
            self.stats = {"n": 1, "rate": 2.5}
            self.types = {"n": pva.UINT}

        def getStats(self):
            return self.stats

        def getStatsPvaTypes(self):
            return self.types

    h = ProcessorHarness(Sloppy)
    with pytest.raises(ValueError, match="no type for rate"):
        h.user_stats_object()
    h.processor.types = {"n": pva.UINT, "rate": pva.STRING}
    with pytest.raises(pva.PvaException):
        h.user_stats_object()


def test_make_frames_covers_the_dtype_range_reproducibly():
    a = [get_image(f).copy() for f in make_frames(3, (40, 40), "int16", seed=5)]
    b = [get_image(f).copy() for f in make_frames(3, (40, 40), "int16", seed=5)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert a[0].min() < -30000 and a[0].max() > 30000
    floats = get_image(next(make_frames(1, (8, 8), "float64")))
    assert 0 <= floats.min() and floats.max() < 1
    ids = [get_frame_id(f) for f in make_frames(3, first_id=10, color_mode=2, shape=(2, 2, 3))]
    assert ids == [10, 11, 12]


def test_fake_publisher_records():
    pub = FakePublisher()
    pub.updateOutputChannel("x")
    assert pub.published == ["x"]
