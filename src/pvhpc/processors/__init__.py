"""Built-in processors, importable as ``pvhpc.processors.<ClassName>``.

Classes are loaded on first use so that a missing optional dependency (pillow,
h5py, rsa, pycryptodome) only matters to the processor that needs it, and the
error names the package to install.
"""

from __future__ import annotations

import importlib

__all__ = [
    "AdImageProcessor",
    "AdOutputFileProcessor",
    "Hdf5AdImageWriter",
    "AdImageDataEncryptor",
    "AdImageDataDecryptor",
    "StreamRecorder",
]

_MODULES = {
    "AdImageProcessor": "ad_image",
    "AdOutputFileProcessor": "output_file",
    "Hdf5AdImageWriter": "hdf5_writer",
    "AdImageDataEncryptor": "encryption",
    "AdImageDataDecryptor": "encryption",
    "StreamRecorder": "recorder",
}


def __getattr__(name: str):
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"pvhpc.processors has no processor {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
