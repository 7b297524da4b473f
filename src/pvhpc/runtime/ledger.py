"""Set-level accounting for the consumers one parent process supervises (SPEC §5).

Each child reports, every second, the ids it processed, failed on and rejected
(as :class:`~pvhpc.counting.IdRuns` runs) with its statistics. When a child dies,
the frames it had taken and never reported are in no counter of its own: the
:class:`SetLedger` counts them, by the set, as *lost with consumer N*, so that for
the set as a whole

    frames in the stream = processed + missed + rejected + errors + lost

holds exactly, also across a death (and a respawn). The stream is the ids from the
first one any child saw to the last one any child saw or read from the source at
its stop, every id once (a source that numbers its frames one by one, as detectors
and the simulator do). A source that restarts numbers from 1 again: each run of ids
carries its *epoch* (the restarts before it), and each epoch is its own stream. A
respawned child counts epochs from 0 again; its epochs are shifted to the latest one
the set has reported when it starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["ChildRecord", "SetLedger"]


def _epoch(run: list[int]) -> int:
    """A run's epoch (runs of three are from before epochs were reported: 0)."""
    return run[3] if len(run) > 3 else 0


@dataclass
class ChildRecord:
    """What one child (one consumer id, over all its incarnations) has reported."""

    stage_id: int
    runs: dict[str, list[list[int]]] = field(
        default_factory=lambda: {"processed": [], "errors": [], "rejected": []}
    )
    #: The run still open in the current incarnation's last report, per kind.
    open: dict[str, list[int] | None] = field(default_factory=dict)
    #: Statistics of each incarnation, the latest last.
    stats: list[dict] = field(default_factory=list)
    pattern: dict | None = None
    #: Deaths: (the reason, the last id the incarnation had received).
    deaths: list[tuple[str, int | None]] = field(default_factory=list)
    final: bool = False
    #: Added to the epochs the current incarnation reports.
    epoch_offset: int = 0

    def take(self, message: dict) -> None:
        """One progress message of the current incarnation."""
        shift = self.epoch_offset
        for kind, (closed, open_run) in (message.get("ids") or {}).items():
            if shift:
                closed = [[*r[:3], _epoch(r) + shift] for r in closed]
                if open_run is not None:
                    open_run = [*open_run[:3], _epoch(open_run) + shift]
            self.runs.setdefault(kind, []).extend(closed)
            self.open[kind] = open_run
        stats = message.get("stats")
        if stats is not None:
            if self.stats and not self._new_incarnation:
                self.stats[-1] = stats
            else:
                self.stats.append(stats)
            self._new_incarnation = False
        self.pattern = message.get("pattern") or self.pattern
        self.final = self.final or bool(message.get("final"))

    _new_incarnation = True

    def died(self, reason: str) -> None:
        """The current incarnation ended without its final report."""
        last = (self.pattern or {}).get("last")
        self.deaths.append((reason, last))
        self.close_incarnation()

    def close_incarnation(self) -> None:
        """Keep the open runs; the next message starts a new incarnation."""
        for kind, run in self.open.items():
            if run is not None:
                self.runs.setdefault(kind, []).append(run)
        self.open = {}
        self._new_incarnation = True

    def all_runs(self, kind: str) -> list[list[int]]:
        runs = list(self.runs.get(kind, []))
        if self.open.get(kind) is not None:
            runs.append(self.open[kind])
        return runs

    def counter(self, section: str, key: str) -> int:
        """A counter summed over the incarnations (each counts from zero)."""
        return sum(int((s.get(section) or {}).get(key, 0)) for s in self.stats)


class SetLedger:
    """The accounting of one consumer set run by one parent (main thread only)."""

    def __init__(self, whole_stream: bool = False) -> None:
        self.children: dict[int, ChildRecord] = {}
        #: The children together are meant to account for every id of the stream
        #: (one distributor set, or copies): ids none of them accounted for are then
        #: reported as unaccounted, also when no child died.
        self.whole_stream = whole_stream

    def child(self, stage_id: int) -> ChildRecord:
        if stage_id not in self.children:
            self.children[stage_id] = ChildRecord(stage_id)
        return self.children[stage_id]

    def take(self, message: dict, id_name: str) -> None:
        child = self.child(message[id_name])
        if child._new_incarnation and child.stats:  # a respawned child's first message
            child.epoch_offset = self._latest_epoch()
        child.take(message)

    def _latest_epoch(self) -> int:
        return max(
            (
                _epoch(r)
                for k in self.children.values()
                for kind in k.runs
                for r in k.all_runs(kind)
            ),
            default=0,
        )

    def summary(self) -> dict:
        """The set's numbers; ``lostWithConsumer`` names the frames each dead child
        took with it (empty when none died)."""
        kids = list(self.children.values())
        kinds = ("processed", "errors", "rejected")
        # Each epoch's span of ids: from the first id any child saw to the last.
        spans: dict[int, list[int]] = {}
        for k in kids:
            for kind in kinds:
                for r in k.all_runs(kind):
                    a, b = r[0], r[0] + r[1] * (r[2] - 1)
                    span = spans.setdefault(_epoch(r), [a, b])
                    span[0], span[1] = min(span[0], a), max(span[1], b)
        ends = [s for s in (self._source_last(k) for k in kids) if s is not None]
        totals = {
            "processed": sum(k.counter("processorStats", "nProcessed") for k in kids),
            "missed": sum(k.counter("processorStats", "nMissed") for k in kids),
            "rejected": sum(k.counter("receiverStats", "nRejected") for k in kids),
            "errors": sum(
                k.counter("processorStats", "nErrors") + k.counter("receiverStats", "nErrors")
                for k in kids
            ),
        }
        out = {"kind": "consumer-set", "consumers": sorted(self.children), **totals}
        out["lostWithConsumer"] = {}
        out["nLost"] = out["nUnaccounted"] = 0
        dead = [k for k in kids if k.deaths]
        if not spans or not (dead or self.whole_stream):
            return out
        if ends:  # the source's last id at stop belongs to the latest epoch
            span = spans[max(spans)]
            span[1] = max([span[1], *ends])
        covered = {e: np.zeros(b - a + 1, dtype=bool) for e, (a, b) in spans.items()}
        for k in kids:
            for kind in kinds:
                for r in k.all_runs(kind):
                    start, step, count, e = r[0], r[1], r[2], _epoch(r)
                    at = start - spans[e][0]
                    covered[e][at : at + step * count : step or 1] = True
        unaccounted = sum(int((~c).sum()) for c in covered.values())
        no_id_errors = sum(k.counter("receiverStats", "nErrors") for k in kids)
        if not dead:
            # Ids of the stream that reached no child and that no child counted as
            # missed (a child that got nothing cannot know which ids were its own).
            out["nUnaccounted"] = max(0, unaccounted - totals["missed"] - no_id_errors)
            if out["nUnaccounted"]:
                out["first"], out["last"] = spans[min(spans)][0], spans[max(spans)][1]
            return out
        # Counted by ids, so that a dead child's last report and its runs agree.
        for kind in ("processed", "rejected"):
            totals[kind] = sum(r[2] for k in kids for r in k.all_runs(kind))
        id_errors = sum(r[2] for k in kids for r in k.all_runs("errors"))
        totals["errors"] = id_errors + no_id_errors
        out.update(totals)
        # Ids no child accounted for are missed (a child's own count), objects without
        # a usable id (counted as errors), or lost with a dead child; the lost ones
        # are shared between the dead by where their ids lie.
        if self.whole_stream:
            lost_total = max(0, unaccounted - totals["missed"] - no_id_errors)
            where, lost = self._shared_losses(dead, covered, spans, lost_total)
        else:
            where, lost = self._own_losses(dead, covered, spans)
            lost_total = sum(lost.values())
        for sid, ids in sorted(where.items()):
            n = lost[sid]
            child = self.children[sid]
            out["lostWithConsumer"][str(sid)] = {
                "n": n,
                "firstId": int(ids[0]) if len(ids) else None,
                "lastId": int(ids[-1]) if len(ids) else None,
                "deaths": [reason for reason, _ in child.deaths],
            }
        out["nLost"] = lost_total
        first_epoch = spans[min(spans)]
        out["first"], out["last"] = first_epoch[0], spans[max(spans)][1]
        out["nEpochs"] = len(spans)
        return out

    def _shared_losses(self, dead, covered, spans, lost_total: int) -> tuple[dict, dict]:
        """One set reads the whole stream: the ids no child accounted for that are not
        missed are lost (``lost_total``), shared between the dead by where their ids
        lie. ``(ids by dead child, how many each lost)``."""
        where = {
            k.stage_id: np.concatenate(
                [self._share(k, c, spans[e][0]) for e, c in sorted(covered.items())]
            )
            for k in dead
        }
        total_share = sum(len(ids) for ids in where.values()) or 1
        lost, given = {}, 0
        for i, (sid, ids) in enumerate(sorted(where.items())):
            last = i == len(where) - 1
            lost[sid] = lost_total - given if last else lost_total * len(ids) // total_share
            given += lost[sid]
        return where, lost

    def _own_losses(self, dead, covered, spans) -> tuple[dict, dict]:
        """Other sets (-nds > 1) or hosts (-oo) took the ids between this set's, so the
        ids no child here accounted for are not all this set's to lose. A dead child
        lost the ids of its own part past the last one it accounted for (below it, a
        gap is what it counted as missed) that no child here processed; an id two
        dead copies of a set both held is lost once."""
        where, lost, claimed = {}, {}, set()
        for k in sorted(dead, key=lambda k: k.stage_id):
            lasts = self._last_accounted(k)
            mine: list[int] = []
            for e, c in sorted(covered.items()):
                if lasts and e not in lasts:
                    continue  # it took no part in that stream
                ids = self._share(k, c, spans[e][0])
                fresh = [int(i) for i in ids[ids > lasts.get(e, spans[e][0] - 1)]]
                fresh = [i for i in fresh if (e, i) not in claimed]
                claimed.update((e, i) for i in fresh)
                mine += fresh
            where[k.stage_id] = np.array(mine, dtype=np.int64)
            lost[k.stage_id] = len(mine)
        return where, lost

    @staticmethod
    def _last_accounted(k: ChildRecord) -> dict[int, int]:
        """The highest id a child processed, failed on or rejected, by epoch."""
        lasts: dict[int, int] = {}
        for kind in ("processed", "errors", "rejected"):
            for r in k.all_runs(kind):
                e, end = _epoch(r), r[0] + r[1] * (r[2] - 1)
                lasts[e] = max(lasts.get(e, end), end)
        return lasts

    @staticmethod
    def _source_last(k: ChildRecord) -> int | None:
        stats = k.stats[-1] if k.stats else {}
        value = (stats.get("processorStats") or {}).get("sourceLastId")
        return int(value) if value is not None and value >= 0 else None

    @staticmethod
    def _share(k: ChildRecord, covered: np.ndarray, first: int) -> np.ndarray:
        """The unaccounted ids that fall in a dead child's part of the stream."""
        ids = np.nonzero(~covered)[0] + first
        pattern = k.pattern or {}
        start = pattern.get("runStart")
        if start is None:
            return ids
        period = pattern["offset"] + pattern["run"] - 1
        return ids[(ids - start) % period < pattern["run"]]
