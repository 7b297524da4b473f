"""The ``pvhpc`` command: every pvhpc tool as a subcommand.

``pvhpc consumer|collector|mirror|sim`` take the same options as the
``pvapy-*`` scripts; ``get``, ``monitor``, ``control``, ``status`` and ``run`` inspect
and drive running workflows.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from .._version import __version__
from .common import entry_point

__all__ = ["main"]

COMMANDS = {
    "consumer": ("consumer", "receive, process and republish a stream (pvapy-hpc-consumer)"),
    "collector": ("collector", "gather producers' streams and sort them (pvapy-hpc-collector)"),
    "mirror": ("mirror", "mirror channels onto a local server (pvapy-mirror-server)"),
    "sim": ("sim", "serve simulated area-detector frames (pvapy-ad-sim-server)"),
    "record": ("record", "record a frame channel and its metadata into HDF5 files"),
    "get": ("inspect", "print a channel's current value"),
    "monitor": ("inspect", "print a channel's updates as they arrive"),
    "control": ("inspect", "send a command to a control channel and print its answer"),
    "status": ("status", "live view of the status channels of running stages"),
    "run": ("run", "run a whole workflow from a YAML file"),
    "dashboard": ("dashboard", "web page of running stages: live numbers, charts, control"),
    "remote-stage": (
        "remote_stage",
        "run one stage on this host for pvhpc run's ssh/slurm launchers",
    ),
}


def _usage() -> str:
    lines = ["usage: pvhpc COMMAND [options]   (pvhpc COMMAND -h for a command's options)", ""]
    lines += [f"  {name:<10} {desc}" for name, (_, desc) in COMMANDS.items()]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        sys.stdout.write(_usage())
        return 0
    if args[0] in ("-v", "--version"):
        sys.stdout.write(f"pvhpc {__version__}\n")
        return 0
    name = args[0]
    if name not in COMMANDS:
        sys.stderr.write(
            f"pvhpc: error: unknown command {name!r} (commands: {', '.join(COMMANDS)}; "
            "pvhpc -h describes them)\n"
        )
        return 2
    module = importlib.import_module(f".{COMMANDS[name][0]}", __package__)
    if COMMANDS[name][0] == "inspect":
        return module.main(args)
    return module.main(args[1:])


# The console script (pyproject.toml) and ``python -m``.
entry = entry_point(main)

if __name__ == "__main__":
    entry()
