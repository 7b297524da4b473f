"""Where the dashboard's numbers come from: a workflow (run here, or attached to by its
file) or status channels found by name pattern.

A source makes snapshots (:mod:`pvhpc.dashboard.board`) and knows each stage's
control channel, the frame channels worth a thumbnail, and how to stop
everything. :class:`WorkflowSource` reads a workflow through its
:class:`~pvhpc.workflow.observer.Observer` (the one that ``pvhpc run`` uses for
its table and its loss check); :class:`PatternSource` reads bare status channels.
Snapshots are made in one thread (the runner's main thread, or the dashboard's
sampling loop); :meth:`control_channel` and :meth:`stop_targets` may be called
from any thread.
"""

from __future__ import annotations

from typing import Any

from ..workflow.model import Workflow
from ..workflow.observer import Observer
from ..workflow.view import StatusWatcher, expand_pattern
from .board import row_entry, set_entry

__all__ = ["WorkflowSource", "PatternSource", "AttachedStage", "control_for_status"]


class AttachedStage:
    """Stands in for a stage process that runs elsewhere (attach mode): the observer
    then knows nothing of it but its channels (a simulator's frame count is unknown)."""

    popen = None
    returncode = None
    running = False
    stopped_by_us = False
    sent = None
    rate = None
    source_done = False
    serving = False

    def __init__(self) -> None:
        self.mirror_counts: dict[str, dict] = {}

    def read_output(self) -> None:
        pass

    def final_reports(self) -> dict:
        return {}

    def set_summaries(self) -> list:
        return []


class WorkflowSource:
    """A workflow's stages, through its observer. ``runner`` is the
    :class:`~pvhpc.workflow.runner.Runner` when this process runs the workflow
    (``pvhpc run --web``), None when attached to one running elsewhere."""

    def __init__(self, wf: Workflow, observer: Observer, runner: Any = None):
        self.wf = wf
        self.observer = observer
        self.runner = runner
        self.title = wf.name
        self._meta: list[tuple[str, str | None, str | None]] = []
        self._controls: dict[str, str] = {}
        for stage in wf.stages:
            if stage.type == "sim":
                self._meta.append((stage.name, None, None))
            elif stage.type == "mirror":
                self._meta += [(f"{stage.name} {dst}", None, None) for dst in stage.mirrors]
            else:
                for inst in stage.instances:
                    key = f"{stage.name}/{inst.stage_id}"
                    self._meta.append((key, inst.control, inst.status))
                    if inst.control:
                        self._controls[key] = inst.control

    @classmethod
    def attached(cls, wf: Workflow, watcher: StatusWatcher) -> WorkflowSource:
        """For a workflow whose stages run elsewhere; ``watcher`` gets their status
        channels (close it when done)."""
        for stage in wf.stages:
            for inst in stage.instances:
                if inst.status:
                    watcher.add(inst.status)
        procs = {s.name: AttachedStage() for s in wf.stages}
        return cls(wf, Observer(wf, procs, watcher))  # type: ignore[arg-type]

    def frame_channels(self) -> list[str]:
        """The channels that carry frames (pva), upstream first: sources, mirrors,
        stage outputs."""
        out: list[str] = []
        for stage in self.wf.stop_order():
            if stage.type == "sim":
                names = [e.name for e in stage.provides if e.protocol == "pva"][:1]
            elif stage.type == "mirror":
                names = list(stage.mirrors)
            else:
                names = [i.output for i in stage.instances if i.output]
            out += [n for n in names if n not in out]
        return out

    def control_channel(self, key: str) -> str | None:
        return self._controls.get(key)

    def stop_targets(self) -> list[tuple[str, str]]:
        """(key, control channel) of every stage, upstream first (the stop order)."""
        targets = []
        for stage in self.wf.stop_order():
            for inst in stage.instances:
                key = f"{stage.name}/{inst.stage_id}"
                if key in self._controls:
                    targets.append((key, self._controls[key]))
        return targets

    @property
    def final(self) -> bool:
        return self.runner is not None and self.runner.exit_status is not None

    def snapshot(self) -> dict:
        """Main thread of the runner (or the sampling loop): rows and set checks."""
        final = self.final
        rows = self.observer.rows(final=final)
        stages = []
        for n, row in enumerate(rows):
            key, control, status = self._meta[n] if n < len(self._meta) else (row.label, None, None)
            stages.append(row_entry(row, key, control, status))
        sets = [
            set_entry(self.observer.check_set(c, final=final), final)
            for c in self.wf.consumer_sets()
        ]
        runner = self.runner
        return {
            "mode": "run" if runner is not None else "attach",
            "workflow": self.wf.name,
            "stages": stages,
            "sets": sets,
            "frames": self.frame_channels(),
            "stopReason": runner.stop_reason if runner is not None else "",
            "ended": final,
            "result": list(runner.summary_lines) if final else [],
            "exitStatus": runner.exit_status if runner is not None else None,
        }


def control_for_status(status: str) -> str | None:
    """The control channel named like a status channel (``x:1:status`` → ``x:1:control``)."""
    head, sep, tail = status.rpartition("status")
    return f"{head}control{tail}" if sep else None


class PatternSource:
    """Status channels by name pattern (``*``: ids 1..max_id), as ``pvhpc status``
    finds them; the control channel of each is its name with ``status`` made
    ``control``. No consumer sets are known: there is no loss check per set."""

    def __init__(
        self,
        patterns: list[str],
        frames: list[str],
        max_id: int = 16,
        id_format: str | None = None,
        watcher: StatusWatcher | None = None,
    ):
        names: list[str] = []
        for pattern in patterns:
            names += [n for n in expand_pattern(pattern, max_id, id_format) if n not in names]
        self.watcher = watcher or StatusWatcher()
        for name in names:
            self.watcher.add(name)
        self.title = "pvhpc dashboard"
        self.frames = list(frames)
        self.runner = None

    def frame_channels(self) -> list[str]:
        return list(self.frames)

    def control_channel(self, key: str) -> str | None:
        return control_for_status(key) if key in self.watcher.channels else None

    def stop_targets(self) -> list[tuple[str, str]]:
        out = []
        for name in self.watcher.answered():
            control = control_for_status(name)
            if control:
                out.append((name, control))
        return out

    def snapshot(self) -> dict:
        stages = []
        for name in self.watcher.answered():
            label = name[: -len(":status")] if name.endswith(":status") else name
            row = self.watcher.row(name, label)
            if row is not None:
                stages.append(row_entry(row, name, control_for_status(name), name))
        return {
            "mode": "attach",
            "workflow": "",
            "stages": stages,
            "sets": [],
            "frames": self.frame_channels(),
            "stopReason": "",
            "ended": False,
            "result": [],
            "exitStatus": None,
        }
