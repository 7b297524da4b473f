"""Run a processor over frames made in memory, without a network, and inspect the result.

A processor sees here exactly the attributes the consumer and collector runtimes
give it (``logger``, ``processorId``, ``inputChannel``, ``outputChannel``,
``objectIdField``, ``pvaServer`` = ``None``, ``dataPublisher``,
``metadataQueueMap``), and the same call order: ``start()``, ``process()`` once
per frame, ``stop()``. What it publishes with ``updateOutputChannel`` is recorded
instead of being served::

    import numpy as np
    from pvhpc.testing import ProcessorHarness, make_frame

    with ProcessorHarness(MyProcessor, {"factor": 2}) as h:
        h.run(make_frame(np.full((4, 4), i, np.uint16), unique_id=i) for i in range(1, 11))
    assert h.published_ids == list(range(1, 11))
    assert h.n_processed == 10 and h.stats["nScaled"] == 10

Everything runs in the calling thread; nothing here opens a channel or a socket.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import pvaccess as pva

from .ntnda import get_frame_id, get_image, make_frame
from .processor import adapt_processor

__all__ = ["FakePublisher", "ProcessorHarness", "make_frame", "make_frames"]


class FakePublisher:
    """Stands in for the runtime's ``dataPublisher``: records every published object."""

    def __init__(self) -> None:
        self.published: list[Any] = []

    def updateOutputChannel(self, pvObject: Any) -> None:  # noqa: N802 - processor API name
        """Record ``pvObject`` (the runtime would serve it on the output channel)."""
        self.published.append(pvObject)


def make_frames(
    count: int,
    shape: tuple[int, ...] = (32, 32),
    dtype: Any = np.uint8,
    *,
    first_id: int = 1,
    seed: int | None = 0,
    **frame_options: Any,
) -> Iterator[pva.NtNdArray]:
    """Yield ``count`` frames of random pixels with ``uniqueId`` ``first_id``, +1, …

    Pixels cover the dtype's range (0..1 for floats); ``seed`` makes them
    reproducible. ``frame_options`` go to :func:`make_frame` (``color_mode``,
    ``codec``, ``attributes``…).
    """
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    for i in range(count):
        if dtype.kind == "f":
            pixels = rng.random(shape).astype(dtype)
        elif dtype.kind == "b":
            pixels = rng.integers(0, 2, shape).astype(bool)
        else:
            info = np.iinfo(dtype)
            pixels = rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)
        yield make_frame(pixels, first_id + i, **frame_options)


class ProcessorHarness:
    """Drive one processor the way the runtime does, with a recording publisher.

    ``processor`` is a processor class (instantiated with ``config``) or an
    instance (then ``config`` must be omitted). Duck-typed processors get the
    optional methods they lack, as in the runtime. ``metadata`` names metadata
    channels (``pva://x``, ``ca://y`` or bare names; the prefix is dropped as in
    the runtime), optionally mapped to objects to pre-load into their queues;
    more can be added with :meth:`put_metadata` at any time.

    Exceptions raised by the processor propagate (a test wants to see them),
    unless ``run(..., catch_errors=True)`` is used, which, like the runtime, counts
    them and goes on.
    """

    def __init__(
        self,
        processor: Any,
        config: dict | None = None,
        *,
        processor_id: int = 1,
        object_id_field: str = "uniqueId",
        input_channel: str = "pvhpc:test:input",
        output_channel: str | None = "pvhpc:test:output",
        metadata: Iterable[str] | Mapping[str, Iterable[Any]] | None = None,
        metadata_queue_size: int = 0,
        logger: logging.Logger | None = None,
    ) -> None:
        if isinstance(processor, type):
            processor = processor(dict(config or {}))
        elif config is not None:
            raise TypeError("give config only with a processor class, not with an instance")
        self.processor = adapt_processor(processor)
        self.publisher = FakePublisher()
        self.object_id_field = object_id_field
        self.returned: list[Any] = []
        self.errors: list[tuple[Any, BaseException]] = []
        self.n_processed = 0  # process() calls, raising ones included
        self.started = False
        self.stopped = False
        p = self.processor
        p.logger = logger or logging.getLogger(f"pvhpc.processor.test{processor_id}")
        p.processorId = processor_id
        p.inputChannel = input_channel
        p.outputChannel = output_channel
        p.objectIdField = object_id_field
        p.pvaServer = None
        p.dataPublisher = self.publisher
        p.metadataQueueMap = {}
        if isinstance(metadata, Mapping):
            items = list(metadata.items())
        else:
            items = [(name, ()) for name in metadata or ()]
        for name, objects in items:
            queue = (
                pva.PvObjectQueue(metadata_queue_size)
                if metadata_queue_size > 0
                else (pva.PvObjectQueue())
            )
            p.metadataQueueMap[_channel_name(name)] = queue
            for pv in objects:
                queue.put(pv)

    # -- lifecycle, in the runtime's order -------------------------------------------

    def start(self) -> ProcessorHarness:
        """Call the processor's ``start()`` (once)."""
        if not self.started:
            self.started = True
            self.processor.start()
        return self

    def process(self, frame: Any) -> Any:
        """Call ``process(frame)`` (starting the processor first if needed); return its
        result, which is also appended to :attr:`returned`."""
        if not self.started:
            self.start()
        self.n_processed += 1
        result = self.processor.process(frame)
        self.returned.append(result)
        return result

    def run(self, frames: Iterable[Any], *, catch_errors: bool = False) -> ProcessorHarness:
        """Process every frame in order. With ``catch_errors``, a raising ``process``
        is recorded in :attr:`errors` and the next frame follows."""
        for frame in frames:
            if not catch_errors:
                self.process(frame)
                continue
            try:
                self.process(frame)
            except Exception as exc:  # noqa: BLE001 - as the runtime: count, go on
                self.errors.append((frame, exc))
        return self

    def configure(self, config: dict) -> None:
        """Call ``configure(config)`` as the control channel's ``configure`` command would."""
        self.processor.configure(dict(config))

    def stop(self) -> None:
        """Call the processor's ``stop()`` (once)."""
        if not self.stopped:
            self.stopped = True
            self.processor.stop()

    def reset_stats(self) -> None:
        """Call ``resetStats()``."""
        self.processor.resetStats()

    def __enter__(self) -> ProcessorHarness:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    # -- what came out -----------------------------------------------------------------

    @property
    def published(self) -> list[Any]:
        """Objects the processor published, in order."""
        return self.publisher.published

    @property
    def published_ids(self) -> list[Any]:
        """The object id field of each published object."""
        return [_object_id(pv, self.object_id_field) for pv in self.published]

    @property
    def published_images(self) -> list[np.ndarray]:
        """The image of each published NTNDArray, as :func:`get_image` reads it."""
        return [get_image(pv) for pv in self.published]

    @property
    def stats(self) -> dict:
        """The processor's ``getStats()`` (the status channel's ``userStats``)."""
        return dict(self.processor.getStats() or {})

    def user_stats_object(self) -> pva.PvObject:
        """``getStats()`` in a PvObject typed by ``getStatsPvaTypes()``, as the status
        channel's ``userStats`` would carry it; raises if a key has no type or a value
        does not fit its type."""
        stats = dict(self.processor.getStats() or {})
        types = dict(self.processor.getStatsPvaTypes() or {})
        missing = sorted(set(stats) - set(types))
        if missing:
            raise ValueError(f"getStatsPvaTypes() gives no type for {', '.join(missing)}")
        return pva.PvObject({k: types[k] for k in stats}, stats)

    def metadata_queue(self, channel: str) -> Any:
        """The ``PvObjectQueue`` of a metadata channel (prefix optional)."""
        return self.processor.metadataQueueMap[_channel_name(channel)]

    def put_metadata(self, channel: str, pvObject: Any) -> None:
        """Queue a metadata object, as the runtime does when the channel updates."""
        self.metadata_queue(channel).put(pvObject)


def _channel_name(name: str) -> str:
    for prefix in ("pva://", "ca://"):
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def _object_id(pv: Any, field: str) -> Any:
    if field == "uniqueId":
        return get_frame_id(pv)
    return pv[field]
