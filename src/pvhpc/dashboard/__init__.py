"""The web dashboard of a running workflow (``pvhpc run --web``, ``pvhpc dashboard``).

A page with a row per stage, the live loss check of each consumer set, charts of
rate, queue and latency per stage over the run, a thumbnail of any frame channel,
and control buttons (configure, reset_stats, stop) that need the dashboard's
token. The numbers come from the stages' status channels (never from the frames:
a thumbnail is one get at most every half second). The web server is aiohttp, the
charts uPlot; every file the page loads ships in ``pvhpc/dashboard/static``.

Needs the ``web`` extra (``pip install 'pvhpc[web]'``): :class:`Dashboard` and
:class:`DashboardServer` are imported only when first used, so that the rest of
pvhpc (``pvhpc run`` without ``--web``) works without it.
"""

from typing import Any

from .access import Access, load_token, parse_listen
from .board import Board
from .control import Controller
from .sources import PatternSource, WorkflowSource
from .thumbnails import Thumbnails, downscale

__all__ = [
    "Access",
    "Board",
    "Controller",
    "Dashboard",
    "DashboardServer",
    "PatternSource",
    "Thumbnails",
    "WorkflowSource",
    "downscale",
    "load_token",
    "parse_listen",
]


def __getattr__(name: str) -> Any:
    if name == "Dashboard":
        from .live import Dashboard

        return Dashboard
    if name == "DashboardServer":
        from .server import DashboardServer

        return DashboardServer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
