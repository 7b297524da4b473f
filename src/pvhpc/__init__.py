"""pvhpc: a streaming framework for high-rate detector data over EPICS PV Access.

Users write processor classes against :class:`UserDataProcessor` (or
:class:`AdImageProcessor` for areaDetector frames) and run them with
``pvapy-hpc-consumer`` / ``pvapy-hpc-collector`` (or ``pvhpc consumer|collector``).
:class:`Simulator` serves simulated detector frames from Python.
"""

from ._version import __version__
from .errors import UsageError

__all__ = [
    "UserDataProcessor",
    "AdImageProcessor",
    "UsageError",
    "Simulator",
    "SimulatorConfig",
    "__version__",
]


def __getattr__(name: str):
    # Load pvaccess, numpy and the codecs only when asked for: ``pvhpc.loopback`` must
    # be importable before pvaccess, so a harness can pin the network first.
    if name == "UserDataProcessor":
        from .processor import UserDataProcessor

        return UserDataProcessor
    if name == "AdImageProcessor":
        from .processors.ad_image import AdImageProcessor

        return AdImageProcessor
    if name in ("Simulator", "SimulatorConfig"):
        from . import simulator

        return getattr(simulator, name)
    raise AttributeError(f"module 'pvhpc' has no attribute {name!r}")
