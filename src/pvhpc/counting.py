"""Object-id bookkeeping: how many objects never arrived (SPEC §5).

A consumer that shares a distributor with others receives ids in runs of ``U``
consecutive values (``--distributor-updates``); after a run the next one starts
``offset`` ids after the run's last id, where ``offset`` is ``--oid-offset`` if
given, else ``(n-1)·U+1`` for ``n`` consumers (or ``n`` distributor sets), else 1.
The pattern repeats every ``period = offset + U - 1`` ids. Ids of that pattern that
never arrived are counted as missed: gaps inside a run, whole runs, and the start of
a run. An id lower than or equal to the last one means the source restarted: a new
stream starts there, and nothing is counted as missed for it.
"""

from __future__ import annotations

__all__ = ["expected_offset", "IdTracker"]


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
        "n_missed",
        "n_restarts",
        "first",
        "_plain",
    )

    def __init__(self, offset: int = 1, run_length: int = 1):
        self.configure(offset, run_length)
        self.last: int | None = None
        self.first: int | None = None
        self.run_start = 0
        self.n_missed = 0
        self.n_restarts = 0

    def configure(self, offset: int, run_length: int = 1) -> None:
        """Set the expected offset and run length (may change at runtime)."""
        self.offset = max(1, int(offset))
        self.run = max(1, int(run_length or 1))
        self.period = self.offset + self.run - 1
        # The common cases (no distributor, or U == 1) need no run bookkeeping.
        self._plain = self.run == 1

    def reset(self) -> None:
        """Forget the stream position and counts (``reset_stats``)."""
        self.last = None
        self.first = None
        self.n_missed = 0
        self.n_restarts = 0

    def update(self, oid: int) -> int:
        """Account for one arrived id; return how many ids were missed before it."""
        last = self.last
        if last is None:
            self.first = self.last = self.run_start = oid
            return 0
        self.last = oid
        if oid <= last:
            self.n_restarts += 1
            self.run_start = oid
            return 0
        if self._plain:
            gap = oid - last
            if gap == self.offset:
                return 0
            # Our ids are last + k·offset; an id off that grid re-anchors the grid.
            missed = (gap - 1) // self.offset
            self.n_missed += missed
            return missed
        return self._update_runs(last, oid)

    def _update_runs(self, last: int, oid: int) -> int:
        start, period, run = self.run_start, self.period, self.run
        missed = self._ours_upto(oid - 1, start, period, run) - self._ours_upto(
            last, start, period, run
        )
        phase = (oid - start) % period
        if phase >= run:
            # Not where the pattern says our ids are: the distributor changed its
            # assignment (a consumer joined or left). Follow the stream from here.
            self.run_start = oid
        else:
            self.run_start = oid - phase
        self.n_missed += missed
        return missed

    @staticmethod
    def _ours_upto(x: int, start: int, period: int, run: int) -> int:
        """How many of our ids lie in [start, x]."""
        if x < start:
            return 0
        d = x - start
        return (d // period) * run + min(d % period, run - 1) + 1
