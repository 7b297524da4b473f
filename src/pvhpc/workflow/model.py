"""What a workflow file describes, once checked: its stages and how they connect.

:class:`Workflow` holds the stages (:class:`StageSpec`, one command line each, which
may run several processes: :class:`Instance`) and answers graph questions: who
serves a channel, who reads whom, the start and stop order, and the consumer sets
that the loss check of SPEC §5 is made for (:class:`ConsumerSet`).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any

from ..endpoints import Endpoint
from ..errors import UsageError

__all__ = [
    "WorkflowError",
    "Endpoint",
    "Instance",
    "StageSpec",
    "ConsumerSet",
    "LaunchSpec",
    "Workflow",
]


class WorkflowError(UsageError):
    """A mistake in a workflow file; the message starts with ``file:line:``."""

    def __init__(self, path: str, line: int | None, message: str):
        self.path = path
        self.line = line
        super().__init__(f"{path}:{line}: {message}" if line else f"{path}: {message}")


@dataclass
class Instance:
    """One consumer or collector of a stage (one id), with its channels."""

    stage_id: int
    inputs: list[str]
    output: str | None
    status: str | None
    control: str | None
    #: (group, set) of the distributor plugin request, or None without the distributor.
    distributor: tuple | None = None


@dataclass
class StageSpec:
    """One stage of a workflow: one command line (which may run several processes)."""

    name: str
    type: str
    line: int
    options: dict
    lines: dict
    env: dict[str, str]
    argv: list[str] = field(default_factory=list)
    args: argparse.Namespace | None = None
    instances: list[Instance] = field(default_factory=list)
    provides: list[Endpoint] = field(default_factory=list)
    #: (endpoint, option key) of every channel the stage reads.
    requires: list[tuple[Endpoint, str]] = field(default_factory=list)
    #: mirror: destination channel -> source endpoint.
    mirrors: dict[str, Endpoint] = field(default_factory=dict)
    #: The workflow file's directory (relative paths of path options start there).
    base_dir: str = ""
    #: Where the stage runs: a host name (ssh, slurm), a node index (slurm), or None
    #: (this machine; with slurm: placed automatically).
    host: str | int | None = None
    #: The stage's name in the file; a consumer stage spread over several hosts is
    #: one StageSpec per host, named ``group@host``.
    group: str = ""
    #: The file's ``host:``, as a list (empty: none given).
    placement: list[str | int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.group = self.group or self.name

    @property
    def label(self) -> str:
        """The stage's name, with its host when it has one: ``process@node1``."""
        if self.host is None or "@" in self.name:
            return self.name
        return f"{self.name}@{self.host}"

    @property
    def is_source(self) -> bool:
        """True for a stage that produces frames without reading any (the simulator)."""
        return self.type == "sim"

    @property
    def command(self) -> list[str]:
        """``pvhpc`` arguments that run this stage: ``[type, *options]``."""
        return [self.type, *self.argv]

    def line_of(self, key: str | None) -> int:
        return self.lines.get(key, self.line) if key else self.line


@dataclass
class ConsumerSet:
    """StageSpec instances that together see a stream once (SPEC §5): the loss invariant
    holds per set, ``frames published on its input channels = processed + missed +
    rejected + errors``.

    With the distributor, the set is every consumer of one distributor group on a
    channel. The group's stream is shared out, in runs of ``distributor-updates``,
    between its distributor sets; a consumer without a set name is a set of its
    own, and consumers with the same set name all receive the same frames (copies).
    ``copies`` gives each member's set name (None: on its own); the invariant then
    holds with one member of each named set counted.
    """

    label: str
    members: list[tuple[StageSpec, int]]
    channels: list[str]
    #: (group, None) of the distributor request the members share; None without it.
    distributor: tuple | None = None
    #: Per member (same order): its distributor set name, or None.
    copies: list[str | None] = field(default_factory=list)


@dataclass
class LaunchSpec:
    """How and where a workflow's stages are started (the file's launcher keys)."""

    #: ``local`` (processes on this machine), ``ssh`` or ``slurm``.
    launcher: str = "local"
    #: How to run pvhpc on the hosts (ssh, slurm), split into words.
    pvhpc_command: list[str] = field(default_factory=lambda: ["pvhpc"])
    ssh_options: list[str] = field(default_factory=list)
    srun_options: list[str] = field(default_factory=list)
    sbatch_options: list[str] = field(default_factory=list)
    #: ``network: {hosts: …}``: the address each host is reached at.
    addresses: dict[str, str] = field(default_factory=dict)
    #: ``network: {search: …}``: more addresses to search (IOCs outside the workflow).
    search: list[str] = field(default_factory=list)
    #: ``network: {name-servers: …}``: EPICS_PVA_NAME_SERVERS.
    name_servers: list[str] = field(default_factory=list)


@dataclass
class Workflow:
    """A checked workflow: its stages, in file order, and how they connect.

    ``network`` is ``inherit``, ``loopback`` or ``hosts`` (address lists derived
    from the placement, see :mod:`pvhpc.workflow.placement`).
    """

    path: str
    name: str
    description: str
    network: str
    duration: float | None
    external: list[Endpoint]
    stages: list[StageSpec]
    launch: LaunchSpec = field(default_factory=LaunchSpec)
    #: What ``pvhpc run`` says before it starts (e.g. a placement it ignores).
    notes: list[str] = field(default_factory=list)

    def provider(self, endpoint: Endpoint) -> StageSpec | None:
        """The stage serving ``endpoint`` (None: external or unknown)."""
        for stage in self.stages:
            if endpoint in stage.provides:
                return stage
        return None

    def upstream(self, stage: StageSpec) -> list[StageSpec]:
        """Stages whose channels ``stage`` reads."""
        out: list[StageSpec] = []
        for endpoint, _ in stage.requires:
            p = self.provider(endpoint)
            if p is not None and p is not stage and p not in out:
                out.append(p)
        return out

    def stop_order(self) -> list[StageSpec]:
        """Stages upstream first (sources, then their readers, …), file order within a level."""
        order, cycle = self.upstream_order()
        return order + cycle

    def upstream_order(self) -> tuple[list[StageSpec], list[StageSpec]]:
        """Stages whose inputs all come before them, in that order, and those left
        over (stages on a cycle, and their readers; :func:`load_workflow` refuses
        a workflow with any)."""
        order: list[StageSpec] = []
        remaining = list(self.stages)
        while remaining:
            ready = [s for s in remaining if all(u in order for u in self.upstream(s))]
            if not ready:
                break
            for s in ready:
                order.append(s)
                remaining.remove(s)
        return order, remaining

    def start_levels(self) -> list[list[StageSpec]]:
        """Stages grouped in the order they start: first the stages that read only
        from sources, then those reading from them, …, and the sources last.

        Each level starts once the channels of the previous one are up, so a reader
        finds its input at its first search (PVA searches for a missing channel back
        off, and a reader started long before its input can take seconds to find
        it). Sources come last, so every stage is listening when frames flow.
        """
        depth: dict[str, int] = {}
        for stage in self.stop_order():
            ups = [u for u in self.upstream(stage) if not u.is_source]
            depth[stage.name] = 1 + max((depth[u.name] for u in ups), default=0)
        readers = [s for s in self.stages if not s.is_source]
        levels = [
            [s for s in readers if depth[s.name] == d]
            for d in sorted({depth[s.name] for s in readers})
        ]
        sources = [s for s in self.stages if s.is_source]
        return [lvl for lvl in levels if lvl] + ([sources] if sources else [])

    def start_order(self) -> list[StageSpec]:
        """All stages in the order of :meth:`start_levels`."""
        return [s for level in self.start_levels() for s in level]

    def consumer_sets(self) -> list[ConsumerSet]:
        """The sets the loss invariant is checked for (SPEC §5)."""
        sets: dict[Any, ConsumerSet] = {}
        stage_names: dict[Any, list[str]] = {}
        for stage in self.stages:
            for inst in stage.instances:
                set_name = None
                if inst.distributor is not None and stage.type == "consumer":
                    group, set_name = inst.distributor
                    key: Any = (inst.inputs[0], group)
                    distributor = (group, None)
                else:
                    key = (stage.name, inst.stage_id)
                    distributor = None
                if key not in sets:
                    sets[key] = ConsumerSet(
                        f"{stage.label} {inst.stage_id}", [], list(inst.inputs), distributor
                    )
                    stage_names[key] = []
                if stage.label not in stage_names[key]:
                    stage_names[key].append(stage.label)
                sets[key].members.append((stage, inst.stage_id))
                sets[key].copies.append(set_name)
        for key, cset in sets.items():
            if cset.distributor is None:
                continue
            group = cset.distributor[0]
            named = sorted({str(s) for s in cset.copies if s is not None})
            details = ([f"group {group}"] if group else []) + (
                [("sets " if len(named) > 1 else "set ") + ", ".join(named)] if named else []
            )
            cset.label = (
                " + ".join(stage_names[key])
                + " (distributor"
                + (" " + ", ".join(details) if details else "")
                + ")"
            )
        return list(sets.values())
