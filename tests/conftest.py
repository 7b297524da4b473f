"""Session-wide test setup: pin every EPICS search, beacon and server to loopback.

The variables are set at import time, before any test (or pvaccess itself) can
create a channel or a server, and are inherited by every process a test starts.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from pvhpc.loopback import LOOPBACK_ENV  # imports nothing else: pvaccess not loaded yet

os.environ.update(LOOPBACK_ENV)

sys.path.insert(0, str(Path(__file__).parent))

import pytest  # noqa: E402

from harness import ProcessGroup, unique_prefix  # noqa: E402


@pytest.fixture
def prefix() -> str:
    """A channel-name prefix no other test uses."""
    return unique_prefix()


@pytest.fixture
def procs(request):
    """Start processes with ``procs.start(...)``; all are stopped at teardown.

    A failing test prints every process's output.
    """
    group = ProcessGroup()
    yield group
    failed = getattr(request.node, "rep_call", None)
    group.stop_all()
    if failed is not None and failed.failed:
        group.dump()


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
