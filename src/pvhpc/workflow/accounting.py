"""The one loss formula (SPEC §5) and the per-set check built on it.

For a finite stream, every consumer set must account for every frame published on
its input: published = processed + missed + rejected + errors (+ skipped). The
workflow runner, the tests and the benchmarks take a stage's numbers with
:func:`stage_counts` and add them with :func:`accounted`; :func:`judge` turns the
checks of all sets into the summary's lines and ``pvhpc run``'s exit status.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .model import ConsumerSet

__all__ = [
    "EXIT_OK",
    "EXIT_LOST",
    "EXIT_WARNINGS",
    "SetCheck",
    "judge",
    "stage_counts",
    "accounted",
]


@dataclass
class SetCheck:
    """The loss invariant of one consumer set, from final (or latest) numbers."""

    cset: ConsumerSet
    published: int | None
    processed: int = 0
    missed: int = 0
    rejected: int = 0
    errors: int = 0
    skipped: int = 0
    #: Frames that consumers of the set took with them when they died (counted by
    #: their supervising parent: ``lostWithConsumer`` of its consumer-set report).
    lost_with_dead: int = 0
    #: Who died, for the summary: "consumer 2 (killed by signal 9)".
    dead: list[str] = field(default_factory=list)
    overruns: int = 0
    missing_reports: list[str] = field(default_factory=list)
    #: Members that reported numbers (0: the set never ran, nothing to check).
    reported: int = 0
    #: Labels of the sets whose stages publish this set's input channels.
    fed_by: list[str] = field(default_factory=list)
    #: Frames that members of a named distributor set lost against their set-mates.
    shortfall: int = 0
    #: Members whose input no server ever answered (final numbers, nConnects 0):
    #: "work 1 <- det:image".
    never_connected: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def accounted(self) -> int:
        return (
            self.processed
            + self.missed
            + self.rejected
            + self.errors
            + self.skipped
            + self.lost_with_dead
        )

    @property
    def unaccounted(self) -> int:
        if self.published is None:
            return 0
        return max(0, self.published - self.accounted) + self.shortfall

    @property
    def extra(self) -> int:
        """Frames accounted for beyond those published: the counts cannot be trusted."""
        return 0 if self.published is None else max(0, self.accounted - self.published)

    @property
    def balanced(self) -> bool:
        """Every frame published arrived and was counted, exactly. A set that counts
        more than were published proves nothing (its missed count is wrong): frames
        may still be on their way to it."""
        return (
            self.published is not None and self.accounted == self.published and not self.shortfall
        )


#: Exit statuses of ``pvhpc run`` (2 is a usage or workflow-file mistake).
EXIT_OK = 0
EXIT_LOST = 1
EXIT_WARNINGS = 3


def judge(checks: list[SetCheck], failed: list[str], early: bool) -> tuple[list[str], int]:
    """The loss-check lines of the summary and the exit status, from the sets' checks.

    ``failed`` names the stages that ended with an error, ``early`` says the
    workflow stopped while a source was still publishing. Status
    :data:`EXIT_LOST` if frames vanished unaccounted or a stage failed;
    :data:`EXIT_WARNINGS` if every frame is accounted for but a set counted
    more frames than were published (its missed count is then wrong, so the
    check proves nothing for it); else :data:`EXIT_OK`. Pure: no I/O.
    """
    lines = ["loss check, per consumer set: published = processed + missed + rejected + errors"]
    warnings: list[str] = []
    over = {c.cset.label for c in checks if c.extra and c.reported}
    total_unaccounted = 0
    total_lost = 0
    for check in checks:
        cset = check.cset
        where = ", ".join(cset.channels)
        parts = (
            f"{check.processed} processed + {check.missed} missed + "
            f"{check.rejected} rejected + {check.errors} errors"
        )
        if check.skipped:
            parts += f" + {check.skipped} skipped"
        if check.lost_with_dead or check.dead:
            parts += f" + {check.lost_with_dead} lost with {', '.join(check.dead)}"
        if check.missing_reports and not check.reported:
            lines.append(
                f"  -     {cset.label} <- {where}: no numbers from "
                f"{', '.join(check.missing_reports)} (it did not run), not checked"
            )
            continue
        if check.published is None:
            lines.append(
                f"  -     {cset.label} <- {where}: {check.accounted} accounted "
                f"({parts}); frames published there unknown, not checked"
            )
            lines += [f"        {note}" for note in check.notes]
            continue
        loss = check.missed + check.rejected + check.errors + check.lost_with_dead
        if check.unaccounted:
            mark = "LOST "
            total_unaccounted += check.unaccounted
            tail = f"  -> {check.unaccounted} frame(s) UNACCOUNTED FOR"
        elif check.extra:
            mark = "extra"
            tail = f"  -> {check.extra} more than published"
            warnings.append(_over_accounting_warning(check, over))
        else:
            mark = "ok   " if not loss else "loss "
            tail = f"  ({loss} lost, all counted)" if loss else ""
            total_lost += loss
        lines.append(
            f"  {mark} {cset.label} <- {where}: {check.published} published = {parts}{tail}"
        )
        if check.missing_reports:
            lines.append(f"        no final numbers from {', '.join(check.missing_reports)}")
        lines += [f"        {note}" for note in check.notes]
    unconnected = [m for c in checks for m in c.never_connected]
    if unconnected:
        warnings.append(
            f"WARNING: no server ever answered for the input of {'; '.join(unconnected)}: "
            "nothing was received there. Check the channel name, and that its source runs "
            "and can be reached (the stage's log names the EPICS address settings)"
        )
    lines += warnings
    status = EXIT_OK
    if total_unaccounted:
        status = EXIT_LOST
        note = (
            " (stopped while the source was still publishing: frames in flight at "
            "that moment cannot be delivered)"
            if early
            else ""
        )
        lines.append(f"RESULT: {total_unaccounted} frame(s) vanished unaccounted{note}")
    if failed:
        status = EXIT_LOST
        lines.append(f"RESULT: stage(s) failed: {', '.join(failed)}")
    if status == EXIT_OK and warnings:
        status = EXIT_WARNINGS
        what = []
        if len(warnings) > bool(unconnected):
            what.append(
                f"{len(warnings) - bool(unconnected)} consumer set(s) counted more frames than "
                "were published, so their missed counts are wrong"
            )
        if unconnected:
            stages = {m.split(" <- ")[0] for m in unconnected}
            what.append(f"{len(stages)} stage(s) never connected to an input")
        lines.append(
            f"RESULT: every frame is accounted for, with warnings: {'; '.join(what)} "
            "(see WARNING above)"
        )
    elif status == EXIT_OK:
        lost = f" ({total_lost} of them counted as lost)" if total_lost else ""
        lines.append(f"RESULT: ok, every frame is accounted for{lost}")
    return lines, status


def _over_accounting_warning(check: SetCheck, over: set[str]) -> str:
    """One line saying which set over-counted, the likely cause and what to do."""
    cset = check.cset
    head = (
        f"WARNING: {cset.label} <- {', '.join(cset.channels)} accounts for {check.extra} "
        f"frame(s) more than were published: its missed count includes frames that were "
        f"never meant for it."
    )
    upstream = [label for label in check.fed_by if label in over]
    if upstream:
        return (
            f"{head} Its producers did not publish those ids: this follows from the "
            f"over-counting of {', '.join(upstream)}; fix that one."
        )
    if cset.distributor is not None:
        group = cset.distributor[0]
        which = f"group {group!r}" if group else f"group {cset.channels[0]!r}, the default"
        return (
            f"{head} Likely cause: another client reads {cset.channels[0]} through the "
            f"distributor in the same group ({which}), e.g. a second copy of this "
            f"workflow or a consumer started by hand, and took its share of the stream. "
            f"Give this workflow's consumers a distributor-group of their own (each group "
            f"gets the whole stream), run a second copy with --channel-prefix, or make "
            f"n-distributor-sets match the sets reading the channel."
        )
    return (
        f"{head} Likely cause: its input is not numbered in the steps it expects; check "
        f"oid-offset (and oid-field) against the ids that channel carries."
    )


def stage_counts(report: dict) -> dict:
    """The numbers of one stage's report (final or live) that the loss check uses.

    ``skipped`` counts only skips that were frames of the stream: the first update of
    every connection is the channel's current value, not a frame.
    """
    r = report.get("receiverStats") or {}
    p = report.get("processorStats") or {}
    skipped = int(r.get("nSkipped", 0))
    if "nConnects" in r:
        # The first update of each connection is the channel's current value, not a
        # frame of the stream: only skips beyond those are frames.
        skipped = max(0, skipped - int(r.get("nConnects", 0)))
    else:
        producers = [v for v in (report.get("producerStats") or {}).values() if isinstance(v, dict)]
        skipped = sum(
            max(0, int(v.get("nSkipped", 0)) - int(v.get("nConnects", 1))) for v in producers
        )
    return {
        "processed": int(p.get("nProcessed", 0)),
        "missed": int(p.get("nMissed", 0)),
        "rejected": int(r.get("nRejected", 0)),
        "errors": int(p.get("nErrors", 0)) + int(r.get("nErrors", 0)),
        "skipped": skipped,
        "overruns": int(r.get("nOverruns", 0)),
        "published": int((report.get("publisherStats") or {}).get("nPublished", 0)),
    }


def accounted(c: dict) -> int:
    """Frames a stage accounts for (SPEC §5): processed + missed + rejected + errors
    (+ skipped frames), from :func:`stage_counts`."""
    return c["processed"] + c["missed"] + c["rejected"] + c["errors"] + c["skipped"]
