"""The user processor interface, and loading a processor class named on the command line.

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

import importlib
import importlib.util
import logging
import os
import sys
from typing import Any

import pvaccess as pva

from .errors import UsageError

__all__ = ["UserDataProcessor", "load_processor_class", "create_processor", "adapt_processor"]


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


def _load_module_from_file(path: str):
    if not os.path.isfile(path):
        raise UsageError(f"--processor-file: no such file: {path}")
    name = "pvhpc_user_" + os.path.splitext(os.path.basename(path))[0].replace("-", "_")
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"--processor-file: cannot load Python code from {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # user code: report it, do not crash with a traceback
        raise UsageError(f"--processor-file {path}: {type(exc).__name__}: {exc}") from exc
    return module


def load_processor_class(processor_file: str | None, processor_class: str | None) -> type:
    """Find the processor class given by ``--processor-file``/``--processor-class``.

    Without either, the passthrough :class:`UserDataProcessor`. A class name with dots
    and no file is imported as ``package.module.ClassName``; PvaPy's passthrough
    names (``pvapy.hpc.userDataProcessor.UserDataProcessor``) and built-in processor
    paths (``pvapy.hpc.adOutputFileProcessor.AdOutputFileProcessor``) map to ours, so
    the seed's command lines work as they are. Raises :class:`UsageError`.
    """
    if processor_file:
        module = _load_module_from_file(processor_file)
        if not processor_class:
            raise UsageError("--processor-file needs --processor-class to name the class in it")
        cls = getattr(module, processor_class, None)
        if cls is None:
            raise UsageError(
                f"--processor-class: class {processor_class} not found in {processor_file}"
            )
        return cls
    if not processor_class:
        return UserDataProcessor
    if "." not in processor_class:
        builtin = _builtin_class(processor_class)
        if builtin is not None:
            return builtin
        raise UsageError(
            f"--processor-class: {processor_class} is not a built-in processor; give "
            "--processor-file or a dotted path such as mypackage.module.ClassName"
        )
    module_name, _, class_name = processor_class.rpartition(".")
    if module_name.startswith("pvapy.hpc.") or module_name == "pvapy.hpc":
        builtin = _builtin_class(class_name)
        if builtin is not None:
            return builtin
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"--processor-class: cannot import module {module_name}: {exc}") from exc
    except Exception as exc:
        raise UsageError(
            f"--processor-class: importing {module_name} failed: {type(exc).__name__}: {exc}"
        ) from exc
    cls = getattr(module, class_name, None)
    if cls is None:
        raise UsageError(f"--processor-class: class {class_name} not found in {module_name}")
    return cls


def _builtin_class(name: str) -> type | None:
    if name == "UserDataProcessor":
        return UserDataProcessor
    try:
        from . import processors
    except ImportError:
        return None
    try:
        return getattr(processors, name)
    except (AttributeError, ImportError):
        return None


def create_processor(cls: type, config: dict) -> Any:
    """Instantiate a processor class with its configuration dict and adapt it."""
    try:
        processor = cls(config)
    except Exception as exc:
        raise UsageError(
            f"--processor-args: {cls.__name__}({config}) failed: {type(exc).__name__}: {exc}"
        ) from exc
    return adapt_processor(processor)


def pva_type_for(value: Any) -> Any:
    """Guess a PVA scalar type for a statistics value of unknown type."""
    if isinstance(value, bool):
        return pva.BOOLEAN
    if isinstance(value, int):
        return pva.LONG
    if isinstance(value, float):
        return pva.DOUBLE
    return pva.STRING
