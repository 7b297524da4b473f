"""EPICS access security for a stage's control channel (``--access-security-file``).

The file is in the ACF format of EPICS access security (``UAG``, ``HAG``, ``ASG``,
``RULE``), read by pvaccess's ``PvaServer.initAs``. A stage puts its control
record in the access security group :data:`CONTROL_GROUP` (``CONTROL``; a file
without that group puts it in ``DEFAULT``) and every other record (output,
status) in ``DEFAULT``. The server checks each put against the rules, by the
client's user name and the host address the server sees it connect from: a
refused put is answered to the client (``ChannelPut::put is not allowed``), never
reaches the stage and changes nothing.

The rules are process-wide (one access security configuration per process), as
in any EPICS server; each stage runs in a process of its own.
"""

from __future__ import annotations

import os
import sys
import tempfile
from typing import Any

import pvaccess as pva

from .errors import UsageError

__all__ = [
    "CONTROL_GROUP",
    "CONTROL_LEVEL",
    "check_file",
    "init_access_security",
    "protected_message",
]

#: The access security group of a stage's control record.
CONTROL_GROUP = "CONTROL"
#: Its access security level: 0, so that the rules of every level apply to it.
CONTROL_LEVEL = 0


def check_file(path: str, option: str = "--access-security-file") -> None:
    """Raise UsageError unless ``path`` is a readable file (no side effects)."""
    if not os.path.isfile(path):
        raise UsageError(f"{option}: {path} is not a file")
    if not os.access(path, os.R_OK):
        raise UsageError(f"{option}: {path} cannot be read")


def init_access_security(server: Any, path: str) -> None:
    """Load the rules of ``path`` into ``server`` (a ``pvaccess.PvaServer``), before
    any record a client may reach is added. Raises UsageError naming the file if
    pvaccess refuses it (a syntax error, a missing file)."""
    check_file(path)
    # The ACF parser prints its complaint ("syntax error at line 3") on stderr: it
    # belongs in the one line the command ends with, so it is caught here.
    error: Exception | None = None
    with tempfile.TemporaryFile() as said:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(said.fileno(), 2)
        try:
            server.initAs(path, "")
        except pva.PvaException as exc:
            error = exc
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        said.seek(0)
        printed = said.read().decode(errors="replace").strip()
    if error is not None:
        detail = "; ".join(printed.splitlines()) or str(error).strip() or "refused"
        raise UsageError(
            f"--access-security-file: {path} is not a valid access security file ({detail})"
        )
    if printed:
        sys.stderr.write(printed + "\n")
    if not server.isAsActive():
        raise UsageError(f"--access-security-file: {path}: access security did not start")


def protected_message(channel: str, path: str) -> str:
    """The line a stage logs when its control channel is protected by ``path``."""
    return (
        f"control channel {channel}: puts are checked against {path} (group "
        f"{CONTROL_GROUP}); a refused put is answered 'not allowed' to its client and "
        "never reaches this stage"
    )
