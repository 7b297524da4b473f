"""The user processor interface: :class:`UserDataProcessor` and :func:`adapt_processor`.

Naming note: the methods and attributes of the processor interface are camelCase
(``process``, ``getStats``, ``processorId``, ``updateOutputChannel``...) on purpose,
unlike the rest of pvhpc. Processor files written for PvaPy's streaming framework
use these names, and they must run here unchanged. The same goes for processor
configuration keys (``outputDirectory``, ``objectIdOffset``...).

The runtime accepts any object of this shape: it need not subclass
:class:`UserDataProcessor`. Missing optional methods are filled in by
:func:`adapt_processor`.
"""

from __future__ import annotations

import logging
from typing import Any

from .errors import UsageError

__all__ = ["UserDataProcessor", "adapt_processor", "config_flag"]


class UserDataProcessor:
    """Base class for user processors; as is, a passthrough that republishes its input.

    Lifecycle, all calls made by the consumer or collector runtime:

    * ``__init__(configDict)`` in the main thread, with the JSON object given by
      ``--processor-args`` (an empty dict if none).
    * The runtime then sets ``logger``, ``processorId``, ``inputChannel``,
      ``outputChannel``, ``objectIdField``, ``pvaServer``, ``dataPublisher`` and
      ``metadataQueueMap`` (channel name without ``pva://``/``ca://`` →
      ``pvaccess.PvObjectQueue``).
    * ``start()`` once, before the first object.
    * ``process(pvObject)`` once per received object, always from one thread at a
      time (the monitor thread, or the processing thread when a receiver queue is
      used). It may block, but every moment it blocks delays the stream. An
      exception is counted in ``processorStats.nErrors`` and the stream goes on.
    * ``configure(configDict)`` from the control channel's thread, while data flows.
    * ``stop()`` once, after the last object has been processed.
    * ``resetStats()`` / ``getStats()`` / ``getStatsPvaTypes()`` on ``reset_stats`` and
      at every status report; ``getStats`` values must match the PVA types given.
    """

    def __init__(self, configDict: dict | None = None) -> None:
        self.configDict = dict(configDict or {})
        self.logger = logging.getLogger("pvhpc.processor")
        self.processorId: int | None = None
        self.dataPublisher: Any = None
        self.pvaServer: Any = None
        self.inputChannel: str | None = None
        self.outputChannel: str | None = None
        self.objectIdField: str | None = None
        self.metadataQueueMap: dict[str, Any] = {}

    def start(self) -> None:
        """Called once before the first object is processed."""

    def configure(self, configDict: dict) -> None:
        """Called with the ``args`` of a ``configure`` control command, while data flows."""
        self.logger.debug("Configuration update: %s", configDict)

    def process(self, pvObject: Any) -> Any:
        """Process one object; the passthrough publishes it unchanged and returns it."""
        self.updateOutputChannel(pvObject)
        return pvObject

    def stop(self) -> None:
        """Called once after the last object has been processed."""

    def resetStats(self) -> None:
        """Zero the processor's own statistics (``reset_stats`` command)."""

    def getStats(self) -> dict:
        """Return the processor's statistics, published in the status as ``userStats``."""
        return {}

    def getStatsPvaTypes(self) -> dict:
        """Return the PVA type of every key of :meth:`getStats` (e.g. ``pvaccess.UINT``)."""
        return {}

    def getInputPvObjectType(self) -> Any:
        """Return the input object type, if the runtime must host the input channel."""
        return None

    def getOutputPvObjectType(self, pvObject: Any) -> Any:
        """Return an object of the output channel's type; by default, the input's type."""
        return pvObject

    def updateOutputChannel(self, pvObject: Any) -> None:
        """Publish ``pvObject`` on the output channel; a no-op without one."""
        if self.dataPublisher is not None and pvObject is not None:
            self.dataPublisher.updateOutputChannel(pvObject)


_OPTIONAL_METHODS = {
    "start": lambda: None,
    "stop": lambda: None,
    "configure": lambda configDict: None,
    "resetStats": lambda: None,
    "getStats": lambda: {},
    "getStatsPvaTypes": lambda: {},
    "getInputPvObjectType": lambda: None,
    "getOutputPvObjectType": lambda pvObject: pvObject,
}


def adapt_processor(processor: Any) -> Any:
    """Give a duck-typed processor the optional methods it lacks; check it can process.

    Raises :class:`UsageError` if the object has no callable ``process``.
    """
    if not callable(getattr(processor, "process", None)):
        raise UsageError(
            f"processor class {type(processor).__name__} has no process(pvObject) method"
        )
    for name, default in _OPTIONAL_METHODS.items():
        if not callable(getattr(processor, name, None)):
            setattr(processor, name, default)
    if not callable(getattr(processor, "updateOutputChannel", None)):

        def update_output_channel(pvObject, _p=processor):
            publisher = getattr(_p, "dataPublisher", None)
            if publisher is not None and pvObject is not None:
                publisher.updateOutputChannel(pvObject)

        processor.updateOutputChannel = update_output_channel
    return processor


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


def config_flag(value: Any, key: str) -> bool:
    """A processor's configuration flag: a bool, 0/1, or true/false/yes/no/on/off (any
    case); anything else is a ValueError naming ``key``."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise ValueError(f"{key} {value!r}: give true or false")
