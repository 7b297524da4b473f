"""Launchers: how ``pvhpc run`` starts each stage: here, through ssh, or through srun.

- :class:`LocalLauncher`: ``python -m pvhpc <stage>`` on this machine.
- :class:`SshLauncher`: ``ssh [ssh-options] HOST -- <pvhpc-command> remote-stage …``
  with the user's own ssh (their keys, agent and ``~/.ssh/config``); see
  :mod:`pvhpc.workflow.remote` for what runs on the host.
- :class:`SlurmLauncher` (:mod:`pvhpc.workflow.slurm`): one ``srun`` job step per
  stage on a node of the current allocation.

Each gives the stage's EPICS settings: the loopback ones for ``network: loopback``,
the ones derived from the placement for ``network: hosts``
(:func:`~pvhpc.workflow.placement.network_env`), none for ``inherit``. Call
:meth:`Launcher.prepare` before anything else: it resolves hosts and addresses and
raises :class:`~pvhpc.errors.UsageError` (one line, exit status 2) for a bad placement.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket

from ..errors import UsageError
from ..loopback import LOOPBACK_ENV
from .model import StageSpec, Workflow, WorkflowError
from .placement import client_env, network_env
from .process import StageProcess
from .remote import RemoteStageProcess

__all__ = ["Launcher", "LocalLauncher", "SshLauncher", "make_launcher", "quote"]

#: ssh options pvhpc adds (the user's own come first, and ssh takes the first value
#: of an option): never ask for a password, notice a dead connection within ~15 s.
SSH_DEFAULTS = ["-o", "BatchMode=yes", "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3"]


def quote(words: list[str]) -> str:
    """Words as one shell command line."""
    return " ".join(shlex.quote(w) for w in words)


def resolve(host: str) -> str | None:
    """The IPv4 address of ``host`` by name, or None."""
    try:
        infos = socket.getaddrinfo(host, None, socket.AF_INET)
    except (OSError, UnicodeError):
        return None
    return str(infos[0][4][0]) if infos else None


class Launcher:
    """Starts the stages of ``wf`` on this machine (the base of the other launchers)."""

    name = "local"

    def __init__(self, wf: Workflow, environ: dict | None = None):
        self.wf = wf
        self.environ = dict(os.environ if environ is None else environ)
        #: Stage name -> the host it runs on (None: here).
        self.hosts: dict[str, str | None] = {}
        #: Host -> the address the other hosts reach it at (``network: hosts``).
        self.addresses: dict[str, str] = {}

    def prepare(self) -> None:
        """Resolve every stage's host and, for ``network: hosts``, every host's
        address; raise :class:`UsageError` for a bad placement. Blocks (name lookups)."""
        self.hosts = {s.name: self.node_of(s) for s in self.wf.stages}
        if self.wf.network != "hosts":
            return
        for stage in self.wf.stages:
            host = self.hosts[stage.name]
            if host is None or host in self.addresses:
                continue
            address = self.wf.launch.addresses.get(host) or self.lookup(host)
            if address is None:
                raise WorkflowError(
                    self.wf.path,
                    stage.line_of("host"),
                    f"stage {stage.name!r}: host {host!r} has no address (its name does not "
                    f"resolve); give it under network: hosts:",
                )
            self.addresses[host] = address

    def node_of(self, stage: StageSpec) -> str | None:
        return None

    def lookup(self, host: str) -> str | None:
        return resolve(host)

    def all_addresses(self) -> list[str]:
        return list(dict.fromkeys(self.addresses.values()))

    def stage_env(self, stage: StageSpec) -> dict[str, str]:
        """The EPICS settings given to ``stage`` explicitly (none for ``inherit``)."""
        if self.wf.network == "loopback":
            return dict(LOOPBACK_ENV)
        host = self.hosts.get(stage.name)
        if self.wf.network == "hosts" and host is not None:
            return network_env(self.wf.launch, self.addresses[host], self.all_addresses())
        return {}

    def runner_env(self) -> dict[str, str]:
        """The EPICS settings of ``pvhpc run`` itself (its view reads the stages'
        status channels)."""
        if self.wf.network == "loopback":
            return dict(LOOPBACK_ENV)
        if self.wf.network == "hosts":
            return client_env(self.wf.launch, self.all_addresses())
        return {}

    def process(self, stage: StageSpec, log_dir: str) -> StageProcess:
        """The stage's process, not started yet."""
        return StageProcess(stage, log_dir, dict(self.environ, **self.stage_env(stage)))

    def command(self, stage: StageSpec) -> list[str]:
        """The command line that starts ``stage`` (for ``--check``)."""
        return ["pvhpc", *stage.command]

    def template(self) -> str:
        """How a stage is started, for ``--check`` (STAGE: its own command line)."""
        return "python -m pvhpc STAGE (on this machine)"

    def describe(self) -> list[str]:
        """Lines for ``--check``: the launcher, and each host's address."""
        lines = [f"launcher: {self.name}: {self.template()}"]
        for host, address in self.addresses.items():
            lines.append(f"  host {host}: {address}")
        if self.addresses:
            env = network_env(self.wf.launch, "<own>", self.all_addresses())
            lines.append("  every stage: " + " ".join(f"{k}={v!r}" for k, v in env.items()))
        return lines


class LocalLauncher(Launcher):
    """Every stage a process of this machine (the default)."""


class RemoteLauncher(Launcher):
    """What the ssh and Slurm launchers share: ``pvhpc remote-stage`` on the host."""

    tool = ""

    def __init__(self, wf: Workflow, environ: dict | None = None):
        super().__init__(wf, environ)
        self.cwd = os.getcwd()

    def prepare(self) -> None:
        if shutil.which(self.tool, path=self.environ.get("PATH")) is None:
            raise UsageError(f"launcher {self.name}: no {self.tool} command on this machine")
        super().prepare()

    def remote_words(self, stage: StageSpec) -> list[str]:
        """What runs on the host: the wrapper, the stage's environment, the stage."""
        env = dict(self.stage_env(stage), **stage.env)
        words = self.wrapper()
        for name, value in env.items():
            words += ["--env", f"{name}={value}"]
        return [*words, "--", *stage.command]

    def via(self, stage: StageSpec) -> str:
        raise NotImplementedError

    def wrapper(self) -> list[str]:
        return [*self.wf.launch.pvhpc_command, "remote-stage", "--cwd", self.cwd]

    def process(self, stage: StageSpec, log_dir: str) -> StageProcess:
        return RemoteStageProcess(
            stage, log_dir, self.environ, self.command(stage), self.via(stage), self.tool
        )


class SshLauncher(RemoteLauncher):
    """Each stage through ``ssh HOST`` (see the module docs)."""

    name = "ssh"
    tool = "ssh"

    def node_of(self, stage: StageSpec) -> str | None:
        return str(stage.host)

    def ssh_words(self, host: str) -> list[str]:
        return ["ssh", "-T", *self.wf.launch.ssh_options, *SSH_DEFAULTS, host, "--"]

    def command(self, stage: StageSpec) -> list[str]:
        host = self.hosts.get(stage.name) or str(stage.host)
        return [*self.ssh_words(host), quote(self.remote_words(stage))]

    def template(self) -> str:
        remote = quote(self.wrapper()) + " --env NAME=VALUE… -- STAGE"
        return f"{quote(self.ssh_words('HOST'))} {quote([remote])}"

    def via(self, stage: StageSpec) -> str:
        return f"ssh connection to {self.hosts.get(stage.name)}"


def make_launcher(wf: Workflow, environ: dict | None = None) -> Launcher:
    """The launcher the workflow asks for (not prepared yet)."""
    if wf.launch.launcher == "ssh":
        return SshLauncher(wf, environ)
    if wf.launch.launcher == "slurm":
        from .slurm import SlurmLauncher

        return SlurmLauncher(wf, environ)
    return LocalLauncher(wf, environ)
