"""pvhpc: a streaming framework for high-rate detector data over EPICS PV Access.

Users write processor classes against :class:`UserDataProcessor` and run them with
``pvapy-hpc-consumer`` / ``pvapy-hpc-collector`` (or ``pvhpc consumer|collector``).
"""

from ._version import __version__
from .errors import UsageError
from .processor import UserDataProcessor

__all__ = ["UserDataProcessor", "UsageError", "__version__"]
