"""The receiver queue (``--receiver-queue-size``): between the monitor thread and the
processing thread, bounded, counting what it rejects, handing frames over in batches."""

from __future__ import annotations

import collections
import threading
import time
from typing import Any

__all__ = ["ReceiverQueue"]

# A fast stream's frames are handed over in batches: the processing thread wakes when
# BATCH_SIZE frames are queued or the oldest has waited BATCH_DELAY seconds, not for
# every frame (a wake-up and the GIL hand-over cost about as much as passing a
# 128x128 frame through). A frame after a pause of BATCH_DELAY or more is handed over
# at once: a slow stream waits for nothing.
BATCH_SIZE = 64
BATCH_DELAY = 0.005


class ReceiverQueue:
    """Bounded FIFO between the monitor thread and the processing thread.

    ``put`` (monitor thread) never blocks: a full queue rejects and counts the
    object. ``get_batch`` (processing thread) waits for objects and returns them in
    batches: at most ``batch_delay`` seconds after the oldest was put (sooner when
    ``batch_size`` are queued, or the object came after a pause of ``batch_delay``),
    or, with an accumulation count (``accumulate`` > 0), when that many are queued or
    none came for ``accumulation_timeout`` s. ``max_length`` 0 means unbounded.
    """

    def __init__(
        self,
        max_length: int = 0,
        accumulate: int = -1,
        accumulation_timeout: float = 1.0,
        batch_size: int = BATCH_SIZE,
        batch_delay: float = BATCH_DELAY,
    ):
        self.max_length = max(0, int(max_length))
        self.accumulate = int(accumulate)
        self.accumulation_timeout = float(accumulation_timeout)
        self.batch_size = max(1, int(batch_size))
        self.batch_delay = max(0.0, float(batch_delay))
        self._items: collections.deque = collections.deque()
        self._cond = threading.Condition(threading.Lock())
        self._waiting = False
        self._woken = False
        self._last_put = -float("inf")
        # When the oldest queued object was put (valid while the queue is not empty),
        # and whether one came after a pause (hand the batch over now).
        self._batch_start = 0.0
        self._urgent = False
        self.n_received = 0
        self.n_rejected = 0
        self.n_delivered = 0
        #: Batches handed over (each one wake-up of the processing thread at most).
        self.n_batches = 0

    @property
    def n_queued(self) -> int:
        return len(self._items)

    def resize(self, max_length: int) -> None:
        self.max_length = max(0, int(max_length))

    def reset_stats(self) -> None:
        self.n_received = self.n_rejected = self.n_delivered = self.n_batches = 0

    def put(self, pv: Any) -> bool:
        """Queue an object; False (and counted as rejected) if the queue is full."""
        self.n_received += 1
        items = self._items
        n = len(items)
        if self.max_length and n >= self.max_length:
            self.n_rejected += 1
            return False
        now = time.monotonic()
        if not n:
            self._batch_start = now
        if now - self._last_put >= self.batch_delay:
            self._urgent = True
        self._last_put = now
        items.append(pv)
        # The waiter reads the state above before it sleeps, with _waiting set: it
        # needs a notify only for what must not wait for its timeout.
        if self._waiting and (self._urgent or n + 1 >= self.batch_size or self.accumulate > 0):
            with self._cond:
                self._cond.notify()
        return True

    def _wait_time(self, now: float) -> float | None:
        """0 if a batch is ready now; else how long until one may be (None: until a
        put notifies)."""
        n = len(self._items)
        if self.accumulate > 0:
            if n >= self.accumulate:
                return 0.0
            if n == 0:
                return None
            return max(0.0, self.accumulation_timeout - (now - self._last_put))
        if n == 0:
            # A stream still running: its next frames do not notify, look again soon.
            return self.batch_delay if now - self._last_put < self.batch_delay else None
        if self._urgent or n >= self.batch_size:
            return 0.0
        return max(0.0, self.batch_delay - (now - self._batch_start))

    def get_batch(self, timeout: float, drain: bool = False) -> list:
        """Wait up to ``timeout`` s for objects; return those ready (maybe none).

        With ``drain`` true, return whatever is queued at once, ignoring batching and
        accumulation.
        """
        if drain or (self._items and self._wait_time(time.monotonic()) == 0.0):
            return self._pop_all()
        deadline = time.monotonic() + timeout
        with self._cond:
            self._waiting = True
            try:
                while True:
                    now = time.monotonic()
                    wait = self._wait_time(now)
                    if wait == 0.0:
                        break
                    remaining = deadline - now
                    if remaining <= 0 or self._woken:
                        self._woken = False
                        return []
                    self._cond.wait(remaining if wait is None else min(wait, remaining))
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
        self._urgent = False
        batch = []
        pop = items.popleft
        try:
            for _ in range(len(items)):
                batch.append(pop())
        except IndexError:
            pass
        self.n_delivered += len(batch)
        if batch:
            self.n_batches += 1
        return batch
