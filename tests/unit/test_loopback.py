"""`python -m pvhpc.loopback` prints the loopback settings as shell exports, for a
terminal that watches a `network: loopback` workflow (docs/tutorial.md)."""

from __future__ import annotations

import subprocess
import sys

from pvhpc.loopback import LOOPBACK_ENV


def test_exports_evaluate_to_the_loopback_settings():
    script = f'eval "$({sys.executable} -m pvhpc.loopback)" && env'
    out = subprocess.run(
        ["bash", "-c", script], env={}, capture_output=True, text=True, check=True
    ).stdout
    env = dict(line.split("=", 1) for line in out.splitlines() if line.startswith("EPICS_"))
    assert env == LOOPBACK_ENV
