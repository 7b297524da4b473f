"""The Slurm launcher: each stage an ``srun`` job step on a node of the allocation
``pvhpc run`` runs in (``salloc``, or an ``sbatch`` script such as
:func:`batch_script` writes).

A stage's ``host:`` is a node index (0 is the allocation's first node) or a node
name; stages without one are placed in turn on the allocation's nodes, in file
order. Steps share their nodes (``srun --overlap``). Each node's address, for
``network: hosts``, comes from ``network: hosts:``, else from Slurm (its
``NodeAddr``), else from its name.
"""

from __future__ import annotations

import os
import re
import subprocess

from ..errors import UsageError
from .launch import RemoteLauncher, quote
from .model import StageSpec, Workflow, WorkflowError

__all__ = ["SlurmLauncher", "batch_script", "allocation_nodes"]


def _scontrol(*args: str, env: dict) -> str:
    try:
        done = subprocess.run(
            ["scontrol", *args], capture_output=True, text=True, timeout=30, env=env, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UsageError(f"launcher slurm: scontrol {' '.join(args)} failed: {exc}") from None
    if done.returncode != 0:
        raise UsageError(
            f"launcher slurm: scontrol {' '.join(args)} failed: "
            f"{done.stderr.strip() or done.returncode}"
        )
    return done.stdout


def allocation_nodes(env: dict) -> list[str]:
    """The node names of the allocation described by ``env`` (``SLURM_JOB_NODELIST``),
    in Slurm's order; UsageError outside an allocation."""
    if not env.get("SLURM_JOB_ID"):
        raise UsageError(
            "launcher slurm: not inside a Slurm allocation (SLURM_JOB_ID is not set); "
            "run pvhpc run under salloc or sbatch, or write a batch script with --emit-batch"
        )
    nodelist = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
    if not nodelist:
        raise UsageError("launcher slurm: SLURM_JOB_NODELIST is not set")
    if "[" not in nodelist:  # plain names: nothing for scontrol to expand
        return [n for n in nodelist.split(",") if n]
    return _scontrol("show", "hostnames", nodelist, env=env).split()


class SlurmLauncher(RemoteLauncher):
    """Each stage through ``srun`` on its node (see the module docs)."""

    name = "slurm"
    tool = "srun"

    def __init__(self, wf: Workflow, environ: dict | None = None):
        super().__init__(wf, environ)
        self.nodes: list[str] = []
        self._auto = 0

    def prepare(self) -> None:
        self.nodes = allocation_nodes(self.environ)
        self._auto = 0
        super().prepare()  # the stages' nodes, in file order

    def node_of(self, stage: StageSpec) -> str | None:
        host = stage.host
        nodes = self.nodes
        where = f"the allocation has {len(nodes)} node(s): {', '.join(nodes)}"
        if host is None:
            node = nodes[self._auto % len(nodes)]
            self._auto += 1
            return node
        if isinstance(host, int):
            if host >= len(nodes):
                raise WorkflowError(
                    self.wf.path,
                    stage.line_of("host"),
                    f"stage {stage.name!r}: host: node index {host}, but {where}",
                )
            return nodes[host]
        if host not in nodes:
            raise WorkflowError(
                self.wf.path,
                stage.line_of("host"),
                f"stage {stage.name!r}: host: {host!r} is not a node of this allocation ({where})",
            )
        return host

    def lookup(self, host: str) -> str | None:
        text = _scontrol("show", "node", "-o", host, env=self.environ)
        m = re.search(r"\bNodeAddr=(\S+)", text)
        if m and re.fullmatch(r"[\d.]+", m.group(1)):
            return m.group(1)
        return super().lookup(m.group(1) if m else host)

    def srun_words(self, node: str | None, label: str) -> list[str]:
        where = [f"--nodelist={node}"] if node else []
        return ["srun", "--nodes=1", "--ntasks=1", *where, "--overlap", f"--job-name={label}"]

    def command(self, stage: StageSpec) -> list[str]:
        node = self.hosts.get(stage.name)
        return [
            *self.srun_words(node, stage.label),
            *self.wf.launch.srun_options,
            *self.remote_words(stage),
        ]

    def template(self) -> str:
        words = [*self.srun_words("NODE", "STAGE"), *self.wf.launch.srun_options, *self.wrapper()]
        return f"{quote(words)} --env NAME=VALUE… -- STAGE"

    def via(self, stage: StageSpec) -> str:
        return f"srun step on {self.hosts.get(stage.name)}"


def batch_script(wf: Workflow, run_options: list[str], cwd: str | None = None) -> str:
    """An ``sbatch`` script that runs ``wf`` with the Slurm launcher: as many nodes as
    its placement names, then ``<pvhpc-command> run FILE --launcher slurm
    <run_options>`` on the first one."""
    indices = [s.host for s in wf.stages if isinstance(s.host, int)]
    names = list(dict.fromkeys(s.host for s in wf.stages if isinstance(s.host, str)))
    n_nodes = max([i + 1 for i in indices] + [len(names), 1])
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", wf.name)
    lines = [
        "#!/bin/bash",
        f"# pvhpc run --launcher slurm --emit-batch: workflow {wf.name} ({wf.path})",
        f"#SBATCH --job-name=pvhpc-{safe}",
        f"#SBATCH --nodes={n_nodes}",
        f"#SBATCH --output=pvhpc-{safe}-%j.out",
    ]
    if names:
        lines.append(f"#SBATCH --nodelist={','.join(names)}")
    lines += [f"#SBATCH {option}" for option in wf.launch.sbatch_options]
    command = [
        *wf.launch.pvhpc_command,
        "run",
        os.path.abspath(wf.path),
        "--launcher",
        "slurm",
        *run_options,
    ]
    lines += ["", f"cd {quote([cwd or os.getcwd()])}", f"exec {quote(command)}", ""]
    return "\n".join(lines)
