"""The EPICS settings that keep every PVA and CA search, beacon and server on loopback.

Tests, the demo and the benchmarks run with these (the values of the developers'
``shared/epics-loopback.env``). A user's own EPICS environment is never changed by
our commands: ``pvhpc run`` applies them only for a workflow that says
``network: loopback``. This module imports nothing, so a test harness can set the
environment before pvaccess is loaded.
"""

from __future__ import annotations

import os

LOOPBACK_ENV: dict[str, str] = {
    "EPICS_PVA_ADDR_LIST": "127.0.0.1",
    "EPICS_PVA_AUTO_ADDR_LIST": "NO",
    "EPICS_PVAS_INTF_ADDR_LIST": "127.0.0.1",
    "EPICS_PVAS_BEACON_ADDR_LIST": "127.0.0.1",
    "EPICS_PVAS_AUTO_BEACON_ADDR_LIST": "NO",
    "EPICS_CA_ADDR_LIST": "127.0.0.1",
    "EPICS_CA_AUTO_ADDR_LIST": "NO",
    "EPICS_CAS_INTF_ADDR_LIST": "127.0.0.1",
    "EPICS_CAS_BEACON_ADDR_LIST": "127.0.0.1",
    "EPICS_CAS_AUTO_BEACON_ADDR_LIST": "NO",
}


def search_settings(ca: bool = False) -> str:
    """Where this process's searches for a PVA (``ca``: CA) channel go, as the EPICS
    variables say: for a message about a channel no server answers."""
    kind = "CA" if ca else "PVA"
    names = (f"EPICS_{kind}_ADDR_LIST", f"EPICS_{kind}_AUTO_ADDR_LIST")
    return ", ".join(f"{n}={os.environ[n]!r}" if n in os.environ else f"{n} unset" for n in names)


def loopback_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """A copy of ``base`` (default: this process's environment) pinned to loopback."""
    env = dict(os.environ if base is None else base)
    env.update(LOOPBACK_ENV)
    return env


def _main() -> None:
    """``python -m pvhpc.loopback``: print the settings as shell ``export`` lines, so
    that a terminal watching a ``network: loopback`` workflow can use them too:
    ``eval "$(python -m pvhpc.loopback)"``."""
    for name, value in LOOPBACK_ENV.items():
        print(f"export {name}={value}")


if __name__ == "__main__":
    _main()
