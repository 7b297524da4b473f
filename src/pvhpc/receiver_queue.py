"""The receiver queue (``--receiver-queue-size``): between the monitor thread and the
processing thread, bounded, counting what it rejects."""

from __future__ import annotations

import collections
import threading
import time
from typing import Any

__all__ = ["ReceiverQueue"]


class ReceiverQueue:
    """Bounded FIFO between the monitor thread and the processing thread.

    ``put`` (monitor thread) never blocks: a full queue rejects and counts the
    object. ``get_batch`` (processing thread) waits for objects, honouring the
    accumulation count and timeout. ``max_length`` 0 means unbounded.
    """

    def __init__(
        self, max_length: int = 0, accumulate: int = -1, accumulation_timeout: float = 1.0
    ):
        self.max_length = max(0, int(max_length))
        self.accumulate = int(accumulate)
        self.accumulation_timeout = float(accumulation_timeout)
        self._items: collections.deque = collections.deque()
        self._cond = threading.Condition(threading.Lock())
        self._waiting = False
        self._woken = False
        self._last_put = time.monotonic()
        self.n_received = 0
        self.n_rejected = 0
        self.n_delivered = 0

    @property
    def n_queued(self) -> int:
        return len(self._items)

    def resize(self, max_length: int) -> None:
        self.max_length = max(0, int(max_length))

    def reset_stats(self) -> None:
        self.n_received = self.n_rejected = self.n_delivered = 0

    def put(self, pv: Any) -> bool:
        """Queue an object; False (and counted as rejected) if the queue is full."""
        self.n_received += 1
        items = self._items
        if self.max_length and len(items) >= self.max_length:
            self.n_rejected += 1
            return False
        items.append(pv)
        self._last_put = time.monotonic()
        if self._waiting:
            with self._cond:
                self._cond.notify()
        return True

    def _ready(self) -> bool:
        n = len(self._items)
        if n == 0:
            return False
        if self.accumulate <= 0 or n >= self.accumulate:
            return True
        return time.monotonic() - self._last_put >= self.accumulation_timeout

    def get_batch(self, timeout: float, drain: bool = False) -> list:
        """Wait up to ``timeout`` s for objects; return those ready (maybe none).

        With ``drain`` true, return whatever is queued at once, ignoring accumulation.
        """
        if drain or self._ready():
            return self._pop_all()
        deadline = time.monotonic() + timeout
        with self._cond:
            self._waiting = True
            try:
                while not self._ready():
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or self._woken:
                        self._woken = False
                        return []
                    wait = remaining
                    if self._items and self.accumulate > 0:
                        wait = min(
                            wait,
                            max(
                                0.001,
                                self.accumulation_timeout - (time.monotonic() - self._last_put),
                            ),
                        )
                    self._cond.wait(wait)
            finally:
                self._waiting = False
        return self._pop_all()

    def wake(self) -> None:
        """Make a waiting ``get_batch`` return now (or the next one, if none waits);
        used on stop."""
        with self._cond:
            self._woken = True
            self._cond.notify_all()

    def _pop_all(self) -> list:
        items = self._items
        batch = []
        pop = items.popleft
        try:
            for _ in range(len(items)):
                batch.append(pop())
        except IndexError:
            pass
        self.n_delivered += len(batch)
        return batch
