"""What a running workflow's stages say about themselves: live numbers from their status
channels, final numbers from their JSON reports, the frames published on each
channel, the loss check of each consumer set, and the rows of the live table."""

from __future__ import annotations

from .accounting import SetCheck, accounted, stage_counts
from .model import ConsumerSet, Endpoint, StageSpec, Workflow
from .process import StageProcess
from .view import StageRow, StatusWatcher, row_from_status

__all__ = ["Observer"]


class Observer:
    """Reads the numbers of a workflow's stages (main thread).

    ``procs`` are the stages' processes by stage name; ``watcher`` monitors the
    consumers' and collectors' status channels.
    """

    def __init__(self, wf: Workflow, procs: dict[str, StageProcess], watcher: StatusWatcher):
        self.wf = wf
        self.procs = procs
        self.watcher = watcher

    def live_report(self, stage: StageSpec, stage_id: int) -> dict | None:
        inst = next(i for i in stage.instances if i.stage_id == stage_id)
        return self.watcher.latest(inst.status) if inst.status else None

    def report(self, stage: StageSpec, stage_id: int, final: bool) -> dict | None:
        if final:
            proc = self.procs[stage.name]
            report = proc.final_reports().get(stage_id)
            if proc.lost and not (report or {}).get("final"):
                # The connection to its host went first: its status channel (read
                # over PVA, not through the connection) may have said more.
                live = self.live_report(stage, stage_id)
                if live is not None and (
                    report is None
                    or accounted(stage_counts(live)) > accounted(stage_counts(report))
                ):
                    return live
            if report is not None:
                return report
        return self.live_report(stage, stage_id)

    def published(self, channel: str, final: bool, seen: tuple = ()) -> int | None:
        """Frames published on a channel so far (None: not known, e.g. external)."""
        endpoint = Endpoint(channel)
        stage = self.wf.provider(endpoint)
        if stage is None or stage.name in seen:
            return None
        proc = self.procs[stage.name]
        if stage.type == "sim":
            proc.read_output()
            if final and proc.lost and not proc.source_done:
                return None  # it went on sending after its host was lost: not known
            return proc.sent if proc.sent is not None else (0 if proc.serving else None)
        if stage.type == "mirror":
            src = stage.mirrors.get(channel)
            if src is None or src.protocol != "pva":
                return None
            return self.published(src.name, final, (*seen, stage.name))
        for inst in stage.instances:
            if inst.output == channel:
                report = self.report(stage, inst.stage_id, final)
                return stage_counts(report)["published"] if report else None
        return None

    def check_set(self, cset: ConsumerSet, final: bool) -> SetCheck:
        total: int | None = 0
        for channel in cset.channels:
            n = self.published(channel, final)
            total = None if n is None or total is None else total + n
        check = SetCheck(cset, total)
        # Members of one named distributor set receive the same frames: the set
        # counts once, with its member that accounts for the most; a member that
        # accounts for fewer lost frames its set-mates got, with no counter saying so.
        named: dict[str, list[tuple[str, dict]]] = {}
        counted: list[dict] = []
        copies = cset.copies or [None] * len(cset.members)
        for (stage, sid), set_name in zip(cset.members, copies):
            report = self.report(stage, sid, final)
            if report is None:
                check.missing_reports.append(f"{stage.label} {sid}")
                continue
            check.reported += 1
            if final:
                check.never_connected += [
                    f"{stage.label} {sid} <- {channel}" for channel in _unanswered(report)
                ]
            c = stage_counts(report)
            if set_name is None:
                counted.append(c)
            else:
                named.setdefault(set_name, []).append((f"{stage.label} {sid}", c))
        for set_name, members in named.items():
            sums = [(accounted(c), who, c) for who, c in members]
            most = max(n for n, _, _ in sums)
            counted.append(next(c for n, _, c in sums if n == most))
            for n, who, _ in sums:
                if n < most:
                    check.shortfall += most - n
                    check.notes.append(
                        f"{who} accounts for {n} frames, its set-mates in set {set_name} for {most}"
                    )
        for c in counted:
            for key in ("processed", "missed", "rejected", "errors", "skipped", "overruns"):
                setattr(check, key, getattr(check, key) + c[key])
        if final:
            self._add_lost_with_dead(cset, check)
            self._add_lost_with_host(cset, check)
        return check

    def _add_lost_with_host(self, cset: ConsumerSet, check: SetCheck) -> None:
        """Frames the set's stages on a lost host took with them: what the set does
        not account for, once a member's host was lost (its last numbers came before
        the end), is counted as lost with it."""
        lost = []
        for stage in {stage.name: stage for stage, _ in cset.members}.values():
            proc = self.procs[stage.name]
            if proc.lost:
                lost.append(f"{stage.label} ({proc.failure()})")
        if lost and check.published is not None and check.accounted < check.published:
            check.lost_with_dead += check.published - check.accounted
            check.dead.extend(lost)

    def _add_lost_with_dead(self, cset: ConsumerSet, check: SetCheck) -> None:
        """The frames the set's dead consumers took with them, from the consumer-set
        report of each stage (one parent) whose consumers are members of the set."""
        ids = {(stage.name, sid) for stage, sid in cset.members}
        for name in {stage.name for stage, _ in cset.members}:
            for summary in self.procs[name].set_summaries():
                for sid, lost in (summary.get("lostWithConsumer") or {}).items():
                    if (name, int(sid)) in ids:
                        check.lost_with_dead += int(lost.get("n", 0))
                        deaths = "; ".join(lost.get("deaths") or []) or "it died"
                        check.dead.append(f"{name} {sid} ({deaths})")
                if summary.get("nUnaccounted"):
                    # Not added to any count: the frames did vanish, in the distributor.
                    check.notes.append(
                        f"{name}: {summary['nUnaccounted']} frame(s) of ids {summary.get('first')}"
                        f"..{summary.get('last')} reached none of its consumers, which did not "
                        "count them as missed: the distributor gave them to no one (its log "
                        "says why)"
                    )

    def signature(self) -> tuple:
        sig: list = []
        for stage in self.wf.stages:
            proc = self.procs[stage.name]
            if stage.type == "sim":
                proc.read_output()
                sig.append(proc.sent)
            for inst in stage.instances:
                report = self.watcher.latest(inst.status) if inst.status else None
                if report:
                    c = stage_counts(report)
                    sig.append((c["processed"], c["missed"], c["rejected"], c["published"]))
                    sig.append((report.get("receiverStats") or {}).get("nReceived"))
        return tuple(sig)

    def rows(self, final: bool = False) -> list[StageRow]:
        rows: list[StageRow] = []
        for stage in self.wf.stages:
            proc = self.procs[stage.name]
            code = proc.returncode
            if stage.type == "sim":
                proc.read_output()
                if code not in (None, 0) and not proc.stopped_by_us:
                    state = "failed"
                elif proc.source_done or code is not None:
                    state = "done"
                elif proc.sent:
                    state = "sending"
                else:
                    state = "starting" if proc.popen else "-"
                rows.append(StageRow(stage.label, state=state, published=proc.sent, rate=proc.rate))
                continue
            if stage.type == "mirror":
                proc.read_output()
                for dst in stage.mirrors:
                    c = proc.mirror_counts.get(dst)
                    if code is not None:
                        state = "done" if code == 0 or proc.stopped_by_us else "failed"
                    elif c is None:
                        state = "starting"
                    else:
                        state = "ok" if c["state"].endswith("connected") else "waiting"
                        if c["overruns"] or c["errors"]:
                            state = "LOSS"
                    rows.append(
                        StageRow(
                            f"{stage.label} {dst}",
                            state=state,
                            received=c["received"] if c else None,
                            overruns=c["overruns"] if c else None,
                            errors=c["errors"] if c else None,
                            rate=c["rate"] if c else None,
                            published=c["published"] if c else None,
                        )
                    )
                continue
            for inst in stage.instances:
                report = self.report(stage, inst.stage_id, final or code is not None)
                if report is None:
                    state = "starting" if proc.running else ("failed" if code else "-")
                    rows.append(StageRow(stage.label, str(inst.stage_id), state=state))
                    continue
                rate = None if final else self.watcher.rate(inst.status) if inst.status else None
                row = row_from_status(stage.label, report, rate)
                if code is not None:
                    if code != 0 and not (proc.stopped_by_us and code in (-2, 130)):
                        row.state = "failed"
                    elif row.state != "LOSS":
                        row.state = "done"
                rows.append(row)
        return rows


def _unanswered(report: dict) -> list[str]:
    """The input channels of a stage's final report that never connected (a consumer's
    ``receiverStats``, a collector's ``producerStats``)."""
    producers = report.get("producerStats") or {}
    if producers:
        return [
            p.get("channel", "")
            for p in producers.values()
            if p.get("nConnects") == 0 and not p.get("nReceived")
        ]
    stats = report.get("receiverStats") or {}
    if stats.get("nConnects") == 0 and not stats.get("nReceived"):
        return [report.get("inputChannel", "")]
    return []
