"""A dashboard put together: its source, board, controller and web server.

``pvhpc run --web`` makes one on the workflow it runs (:meth:`Dashboard.follow`: the
runner's main thread feeds the board); ``pvhpc dashboard`` makes one on stages
that run elsewhere and feeds it with :meth:`Dashboard.run_until`.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from .access import Access
from .board import Board
from .control import Controller
from .server import DashboardServer

__all__ = ["Dashboard", "SAMPLE_PERIOD"]

#: Seconds between two snapshots (the stages' status channels update once a second).
SAMPLE_PERIOD = 1.0


class Dashboard:
    """One dashboard. :meth:`start` listens and returns the URL; :meth:`sample` (one
    thread only: the runner's main thread or :meth:`run_until`) makes a snapshot
    when one is due; :meth:`stop` pushes the last snapshot and closes the server."""

    def __init__(
        self,
        source: Any,
        access: Access,
        host: str,
        port: int,
        thumbnail_period: float = 1.0,
        period: float = SAMPLE_PERIOD,
    ):
        self.source = source
        self.access = access
        self.period = period
        self.board = Board(source.title)
        self.controller = Controller(source)
        self.server = DashboardServer(
            self.board, self.controller, access, host, port, thumbnail_period
        )
        self._next = 0.0
        self._state: tuple = ()

    def start(self) -> str:
        return self.server.start()

    def start_lines(self) -> list[str]:
        """What to print at start: where the page is, and how control is allowed."""
        url = self.server.url
        if self.access.read_only:
            return [f"dashboard: {url} (read-only)"]
        if self.access.token_file:
            return [f"dashboard: {url} (control token from {self.access.token_file})"]
        return [
            f"dashboard: {url}#token={self.access.token}",
            f"dashboard control token: {self.access.token}",
        ]

    def sample(self, force: bool = False) -> None:
        """Publish a snapshot if one is due, or at once if the run changed state."""
        runner = self.source.runner
        state = (runner.stop_reason, runner.exit_status) if runner is not None else ()
        now = time.monotonic()
        if not force and state == self._state and now < self._next:
            return
        self._state = state
        self._next = now + self.period
        self.board.publish(self.source.snapshot())

    def follow(self, runner: Any) -> None:
        """Feed the board from ``runner``'s main thread, as it runs."""
        runner.tick_hooks.append(lambda _runner: self.sample())

    def run_until(self, stop: threading.Event, duration: float = 0.0) -> None:
        """Sample until ``stop`` is set (or ``duration`` seconds, if > 0)."""
        end = time.monotonic() + duration if duration > 0 else None
        while not stop.is_set():
            self.sample()
            wait = self.period if end is None else min(self.period, end - time.monotonic())
            if wait <= 0 or stop.wait(wait):
                break
        self.sample(force=True)

    def stop(self) -> None:
        self.server.stop()
