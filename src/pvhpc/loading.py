"""Finding a processor class named on the command line, and making an instance of it.

``--processor-file`` + ``--processor-class`` load a class from a user's file; a
dotted ``--processor-class`` alone imports it from a module; PvaPy's names of its
passthrough and built-in processors (``pvapy.hpc.userDataProcessor.UserDataProcessor``,
``pvapy.hpc.adOutputFileProcessor.AdOutputFileProcessor``...) map to ours, so the
seed's command lines work as they are. Mistakes raise :class:`~pvhpc.errors.UsageError`.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from typing import Any

from .errors import UsageError
from .processor import UserDataProcessor, adapt_processor

__all__ = ["load_processor_class", "create_processor"]


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
    # By name, like any processor class: the built-ins are plug-ins of the runtime,
    # not a part of it (each loads its optional dependencies only when asked for).
    try:
        return getattr(importlib.import_module(f"{__package__}.processors"), name)
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
