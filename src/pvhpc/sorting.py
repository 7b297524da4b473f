"""The collector's sorting cache: objects from several producers released in id order."""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["SortingCache", "same_object"]

# Sort keys: a producer's epoch (source restarts it has seen) above the object id.
_SHIFT = 48
_MASK = (1 << _SHIFT) - 1


class SortingCache:
    """Holds objects and releases them in object-id order.

    Each producer's own stream arrives in id order, so once every producer has sent
    an id above X, nothing more with id X can come: objects below that *watermark*
    are released at once. If a producer stalls, the cache still releases its lowest
    ids whenever it holds more than ``size`` objects; and a producer that has sent
    nothing for ``gap_timeout`` seconds while others have (it died, or its consumer
    did) is left out of the watermark until it sends again (:meth:`leave_out_silent`),
    so the others' objects are not held for ids that will never come. Objects with the id last
    released (tiles of one frame) are released with it; an object whose id is
    below the last released id arrived too late and is rejected (counted, never
    released). An object equal to one already held or released with its id (same
    id, ``timeStamp`` and values: a producer that published a frame twice) is a
    duplicate: rejected and counted in ``n_duplicates`` too, never released twice.
    A producer whose id goes down has seen its source restart: its objects from
    then on belong to the next stream (epoch), released after every object of the
    stream before (sorted by epoch, then id), so a restarted source is a new
    stream downstream, not a flood of late objects.
    ``add`` may be called from several monitor threads; ``release(pv, oid)`` is
    called with the lock held, in id order.
    """

    def __init__(
        self,
        size: int,
        release: Callable[[Any, int], None],
        step: int = 1,
        n_producers: int = 1,
        on_reject: Callable[[int], None] | None = None,
        gap_timeout: float = 0.0,
    ):
        self.size = max(1, int(size))
        self.step = max(1, int(step))
        self.gap_timeout = float(gap_timeout)
        #: Each producer's last object, as a sort key (epoch << 48 | id).
        self._producer_last: list = [None] * max(1, n_producers)
        #: Each producer's epoch: the source restarts it has seen.
        self._producer_epoch: list = [0] * max(1, n_producers)
        #: When each producer last sent (monotonic); None before the stream began.
        self._producer_seen: list = [None] * max(1, n_producers)
        #: Producers left out of the watermark, each with when it was left out.
        self.silent: dict[int, float] = {}
        self._first_add: float | None = None
        self._watermark = None
        self._release = release
        #: Called with the id of every rejected object (with the lock held).
        self.on_reject = on_reject
        self._heap: list = []
        self._seq = itertools.count()
        self._lock = threading.Lock()
        self._last_key: int | None = None
        self.n_added = 0
        self.n_released = 0
        self.n_rejected = 0
        self.n_duplicates = 0
        self.max_held = 0
        self.last_add = time.monotonic()
        # Objects held, by id, and those released with the last released id: what a
        # later object with the same id is compared with (see same_object).
        self._held: dict[int, list] = {}
        self._released_last: list = []

    def __len__(self) -> int:
        return len(self._heap)

    def resize(self, size: int) -> None:
        """Change the cache size at runtime; a smaller cache releases at once."""
        with self._lock:
            self.size = max(1, int(size))
            self._release_ready()

    def add(self, pv: Any, oid: int, producer: int = 0) -> bool:
        """Add one object from producer index ``producer``; False if rejected as too late."""
        with self._lock:
            self.n_added += 1
            now = self.last_add = time.monotonic()
            if self._first_add is None:
                self._first_add = now
            prev = self._producer_last[producer]
            if prev is not None and oid < (prev & _MASK):
                self._producer_epoch[producer] += 1  # its source restarted
            key = (self._producer_epoch[producer] << _SHIFT) | oid
            self._producer_last[producer] = key
            self._producer_seen[producer] = now
            if producer in self.silent:
                del self.silent[producer]
            self._update_watermark()
            last = self._last_key
            if last is not None and key < last:
                self.n_rejected += 1
                if self.on_reject is not None:
                    self.on_reject(oid)
                return False
            held = self._held.get(key)
            if held is not None or key == last:
                earlier = (held or []) + (self._released_last if key == last else [])
                if any(same_object(pv, other) for other in earlier):
                    self.n_rejected += 1
                    self.n_duplicates += 1
                    if self.on_reject is not None:
                        self.on_reject(oid)
                    return False
            if held is None:
                self._held[key] = [pv]
            else:
                held.append(pv)
            heapq.heappush(self._heap, (key, next(self._seq), pv))
            if len(self._heap) > self.max_held:
                self.max_held = len(self._heap)
            self._release_ready()
            return True

    def _update_watermark(self) -> None:
        silent = self.silent
        lasts = [v for i, v in enumerate(self._producer_last) if i not in silent]
        self._watermark = None if not lasts or None in lasts else min(lasts)

    def leave_out_silent(self) -> list[int]:
        """Leave out of the watermark each producer that sent nothing for
        ``gap_timeout`` seconds while another one did, and release what no longer
        waits; returns the producers newly left out (their ids, when released past,
        count as missed downstream). Called periodically; no-op with timeout 0."""
        timeout = self.gap_timeout
        if timeout <= 0 or len(self._producer_last) < 2:
            return []
        with self._lock:
            if self._first_add is None:
                return []
            now = time.monotonic()
            if now - self.last_add >= timeout:
                return []  # the whole stream paused: release_idle's case, not a gap
            newly = [
                i
                for i, seen in enumerate(self._producer_seen)
                if i not in self.silent and now - (seen or self._first_add) >= timeout
            ]
            if newly:
                for i in newly:
                    self.silent[i] = now
                self._update_watermark()
                self._release_ready()
            return newly

    def _release_ready(self) -> None:
        heap = self._heap
        while heap:
            key = heap[0][0]
            mark = self._watermark
            complete = (mark is not None and key < mark) or key == self._last_key
            if not complete and len(heap) <= self.size:
                return
            self._pop()

    def _pop(self) -> None:
        key, _, pv = heapq.heappop(self._heap)
        held = self._held[key]
        held.remove(pv)
        if not held:
            del self._held[key]
        if key != self._last_key:
            self._released_last = []
        self._released_last.append(pv)
        self._last_key = key
        self.n_released += 1
        self._release(pv, key & _MASK)

    @property
    def last_released(self) -> int | None:
        """The id of the object released last (None before the first)."""
        return None if self._last_key is None else self._last_key & _MASK

    def release_idle(self, idle: float) -> int:
        """Release everything held if nothing arrived for ``idle`` seconds.

        The end of a stream has no higher id to push its last frame out; without this
        it would wait for the cache to fill or for stop. Returns how many were released.
        """
        with self._lock:
            if not self._heap or time.monotonic() - self.last_add < idle:
                return 0
            n = len(self._heap)
            while self._heap:
                self._pop()
            return n

    def flush(self) -> None:
        """Release everything held, in order (on stop)."""
        with self._lock:
            while self._heap:
                self._pop()

    def reset_stats(self) -> None:
        with self._lock:
            self.n_added = self.n_released = self.n_rejected = self.n_duplicates = 0
            self._producer_last = [None] * len(self._producer_last)
            self._producer_seen = [None] * len(self._producer_seen)
            self.silent = {}
            self._first_add = None
            self._watermark = None
            self.max_held = len(self._heap)


def same_object(a: Any, b: Any) -> bool:
    """Whether two objects with one id are the same frame twice: equal ``timeStamp``
    (if they have one) and equal values. Tiles of one frame differ in their timestamps
    (a distributor could not hand them out otherwise) or in their pixels and indices.
    Only called for objects whose id is already held or was just released."""
    try:
        if a.hasField("timeStamp") and a["timeStamp"] != b["timeStamp"]:
            return False
        return _equal(a.toDict(), b.toDict())
    except Exception:  # noqa: BLE001 - objects that cannot be compared are not equal
        return False


def _equal(x: Any, y: Any) -> bool:
    if isinstance(x, dict):
        return isinstance(y, dict) and x.keys() == y.keys() and all(_equal(x[k], y[k]) for k in x)
    if isinstance(x, (list, tuple)):
        return (
            isinstance(y, (list, tuple))
            and len(x) == len(y)
            and all(_equal(u, v) for u, v in zip(x, y))
        )
    if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
        return bool(np.array_equal(np.asarray(x), np.asarray(y)))
    return bool(x == y)
