"""Object-id bookkeeping: how many objects never arrived (SPEC §5).

A consumer that shares a distributor with others receives ids in runs of ``U``
consecutive values (``--distributor-updates``); after a run the next one starts
``offset`` ids after the run's last id, where ``offset`` is ``--oid-offset`` if
given, else ``(n-1)·U+1`` for ``n`` consumers (or ``n`` distributor sets), else 1.
The pattern repeats every ``period = offset + U - 1`` ids. Ids of that pattern that
never arrived are counted as missed: gaps inside a run, whole runs, and the start of
a run. An id equal to the last one is another part of the same frame (the tiles of a
split frame all carry its id): nothing is missed and nothing restarts. An id lower
than the last one means the source restarted: a new stream starts there, and nothing
is counted as missed for it.
"""

from __future__ import annotations

import threading

__all__ = ["expected_offset", "IdTracker", "IdRuns", "run_ids", "ids_in_pattern"]


def expected_offset(oid_offset: int, n_consumers: int, updates: int | None, n_sets: int = 1) -> int:
    """The id step between the last object of one run and the first of the next."""
    if oid_offset and oid_offset > 0:
        return int(oid_offset)
    if updates and updates > 0:
        if n_sets and n_sets > 1:
            return (n_sets - 1) * updates + 1
        if n_consumers > 1:
            return (n_consumers - 1) * updates + 1
    return 1


class IdTracker:
    """Counts missed ids of one receiver; ``update(id)`` is called once per object.

    Called from one thread only (the monitor thread). ``n_missed`` and
    ``n_restarts`` are plain ints, read by the reporting thread without locking.
    """

    __slots__ = (
        "offset",
        "run",
        "period",
        "last",
        "run_start",
        "candidates",
        "committed",
        "n_missed",
        "n_restarts",
        "first",
        "_plain",
    )

    def __init__(self, offset: int = 1, run_length: int = 1):
        self.configure(offset, run_length)
        self.reset()

    def configure(self, offset: int, run_length: int = 1) -> None:
        """Set the expected offset and run length (may change at runtime)."""
        self.offset = max(1, int(offset))
        self.run = max(1, int(run_length or 1))
        self.period = self.offset + self.run - 1
        # The common cases (no distributor, or U == 1) need no run bookkeeping.
        self._plain = self.run == 1
        self.run_start = None
        self.candidates = {}

    def reset(self) -> None:
        """Forget the stream position and counts (``reset_stats``)."""
        self.last: int | None = None
        self.first: int | None = None
        # Where the current run started, once known. Until then (the first id we see
        # may sit anywhere inside a run) every possible start is kept in
        # ``candidates`` with the ids it would have lost, until the ids rule out all
        # but one; meanwhile the smallest of those losses is shown.
        self.run_start: int | None = None
        self.candidates: dict[int, int] = {}
        self.committed = 0
        self.n_missed = 0
        self.n_restarts = 0

    def update(self, oid: int) -> int:
        """Account for one arrived id; return how many ids were missed before it."""
        last = self.last
        self.last = oid
        if last is None:
            self.first = oid
            self._anchor(oid)
            return 0
        if oid == last:
            return 0
        if oid < last:
            self.n_restarts += 1
            self._anchor(oid)
            return 0
        if self._plain:
            # Our ids are last + k·offset; an id off that grid re-anchors the grid.
            missed = (oid - last - 1) // self.offset
            self.n_missed += missed
            return missed
        before = self.n_missed
        if self.run_start is None:
            self._update_candidates(last, oid)
        else:
            start = self.run_start
            missed = self._ours_upto(oid - 1, start) - self._ours_upto(last, start)
            self.committed += missed
            phase = (oid - start) % self.period
            if phase >= self.run:
                # Not where the pattern says our ids are: the distributor changed its
                # assignment (a consumer joined or left). Follow the stream from here.
                self._anchor(oid)
            else:
                self.run_start = oid - phase
            self.n_missed = self.committed
        return self.n_missed - before

    def _anchor(self, oid: int) -> None:
        self.run_start = None
        self.candidates = {} if self._plain else {oid - pos: 0 for pos in range(self.run)}

    def _update_candidates(self, last: int, oid: int) -> None:
        survivors = {}
        for start, lost in self.candidates.items():
            if (oid - start) % self.period < self.run:
                survivors[start] = lost + (
                    self._ours_upto(oid - 1, start) - self._ours_upto(last, start)
                )
        if not survivors:
            # No phase explains this id: the assignment changed. Keep the smallest
            # loss so far and start over from here.
            self.committed += min(self.candidates.values(), default=0)
            self._anchor(oid)
        elif len(survivors) == 1:
            start, lost = survivors.popitem()
            self.committed += lost
            self.run_start = oid - (oid - start) % self.period
            self.candidates = {}
        else:
            self.candidates = survivors
        self.n_missed = self.committed + min(self.candidates.values(), default=0)

    def pattern(self) -> dict:
        """Where this tracker's ids lie: ``offset``, ``run`` and, once known, the start
        of a run (``runStart``); ``last`` id seen. Another process can then tell which
        ids of the stream were this receiver's (:func:`ids_in_pattern`)."""
        start = self.run_start
        if start is None and self.last is not None and self._plain:
            start = self.last
        return {"offset": self.offset, "run": self.run, "runStart": start, "last": self.last}

    def pending(self, oid: int) -> int:
        """How many of our ids lie after the last one received, up to ``oid``.

        Used at stop with the source's current id: those ids were published but have
        not (yet) arrived. With an unknown run phase, the smallest possible count.
        """
        last = self.last
        if last is None or oid <= last:
            return 0
        if self._plain:
            return (oid - last) // self.offset
        start = self.run_start
        if start is None:
            return min(
                (self._ours_upto(oid, c) - self._ours_upto(last, c) for c in self.candidates),
                default=0,
            )
        return self._ours_upto(oid, start) - self._ours_upto(last, start)

    def count_missed_until(self, oid: int) -> int:
        """At stop: count our ids after the last received, up to ``oid``, as missed."""
        missed = self.pending(oid)
        self.committed += missed
        self.n_missed += missed
        return missed

    def _ours_upto(self, x: int, start: int) -> int:
        """How many of our ids lie in [start, x], for runs starting at ``start``."""
        if x < start:
            return 0
        d = x - start
        return (d // self.period) * self.run + min(d % self.period, self.run - 1) + 1


class IdRuns:
    """Object ids as arithmetic runs ``[start, step, count, epoch]``: 1,3,5,7 is one run.

    :meth:`add` is called by one thread (the processing thread) once per object;
    :meth:`take` by another (the main thread) to report what was added since the
    last call, as closed runs and the run still open (which may grow, and is
    reported again next time). A consumer of a distributor set adds one run per
    ``--distributor-updates`` batch at most, so reports stay small. ``epoch`` is
    the number of source restarts before the ids added now (set by the caller when
    it sees one); a restart always starts a new run, which carries it.
    """

    __slots__ = ("runs", "_last", "n", "epoch", "_lock")

    def __init__(self) -> None:
        self.runs: list[list[int]] = []
        self._last: list[int] | None = None
        self.n = 0
        self.epoch = 0
        # Taken to start a run (once per batch of ids) and by take(); growing the
        # open run is a plain write that take() may see a moment late.
        self._lock = threading.Lock()

    def add(self, oid: int) -> None:
        """Add one id (in arrival order)."""
        self.n += 1
        r = self._last
        if r is not None and r[3] == self.epoch:
            start, step, count = r[0], r[1], r[2]
            if count == 1 and oid > start:
                r[1] = oid - start
                r[2] = 2
                return
            if oid == start + step * count:
                r[2] = count + 1
                return
        r = [oid, 1, 1, self.epoch]
        with self._lock:
            self._last = r
            self.runs.append(r)

    def take(self) -> tuple[list[list[int]], list[int] | None]:
        """The runs closed since the last call (forgotten here), and the open run."""
        with self._lock:
            runs = self.runs
            closed = [list(r) for r in runs[:-1]]
            del runs[:-1]
            last = self._last
            return closed, (list(last) if last is not None else None)


def ids_in_pattern(pattern: dict, first: int, last: int) -> list[int]:
    """The ids in ``[first, last]`` that fall where ``pattern`` (IdTracker.pattern)
    says its receiver's ids lie; every id when the phase is unknown."""
    offset, run, start = pattern["offset"], pattern["run"], pattern.get("runStart")
    if first > last:
        return []
    if start is None:
        return list(range(first, last + 1))
    period = offset + run - 1
    return [x for x in range(first, last + 1) if (x - start) % period < run]


def run_ids(runs: list[list[int]]):
    """Every id of ``[start, step, count]`` runs, in order (for small reports and tests)."""
    for start, step, count in runs:
        yield from range(start, start + step * count, step) if step else [start] * count
