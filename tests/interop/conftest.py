"""Interoperability tests: our commands next to other PVA implementations (p4p/PVXS,
the reference PvaPy). The session setup (loopback EPICS, ``procs``, ``prefix``) is the
top-level ``tests/conftest.py``; this file only makes the helper modules of this
directory importable by name, whatever pytest's import mode."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = str(Path(__file__).parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)
