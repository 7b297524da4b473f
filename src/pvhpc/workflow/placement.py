"""Where a workflow's stages run: the launcher keys of a workflow file, each stage's
``host:``, consumer stages spread over hosts, and the EPICS address lists that join
the hosts.

A file names its launcher and places stages on hosts::

    launcher: ssh                 # local (the default), ssh or slurm
    pvhpc-command: /opt/pvhpc/bin/pvhpc   # pvhpc on the hosts [pvhpc]
    ssh-options: [-F, ~/.ssh/beamline.conf]
    network:
      hosts: {det: 10.0.0.1, node1: 10.0.0.2, node2: 10.0.0.3}
    stages:
      process: {type: consumer, n-consumers: 4, host: [node1, node2], …}

A consumer stage whose ``host:`` is a list is split into one stage per host
(``process@node1``, ``process@node2``), each with a run of consecutive consumer
ids: 4 consumers on 2 hosts are 1,2 and 3,4. The parts keep the set's id offset
(``oid-offset`` is given to each when the distributor options would derive a
different one from the part's own number of consumers), so the distributor and the
loss check see one set of 4.

``network: hosts`` (or a mapping with ``hosts:``) derives every stage's EPICS
settings from the placement (:func:`network_env`): it searches only the workflow's
hosts (and ``search:``), serves and sends beacons on its own host's address only.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import shlex
from collections.abc import Callable
from typing import Any

from ..counting import expected_offset
from .argv import suggest
from .model import LaunchSpec, StageSpec, Workflow, WorkflowError

__all__ = [
    "LAUNCHERS",
    "NETWORK_MODES",
    "read_launch",
    "read_host",
    "place",
    "network_env",
    "client_env",
]

LAUNCHERS = ("local", "ssh", "slurm")
NETWORK_MODES = ("inherit", "loopback", "hosts")
LAUNCH_KEYS = ("launcher", "pvhpc-command", "ssh-options", "srun-options", "sbatch-options")
NETWORK_KEYS = ("hosts", "search", "name-servers")
_ID_OPTIONS = ("--consumer-id=", "--n-consumers=", "--consumer-id-list=", "--oid-offset=")

Fail = Callable[[str, str], Any]  # (key, message) -> raises


def _words(value: Any, key: str, fail: Fail) -> list[str]:
    """A list of words from a list or a shell-quoted string."""
    if isinstance(value, str):
        try:
            return shlex.split(value)
        except ValueError as exc:
            fail(key, f"{key}: {exc}")
    if isinstance(value, list) and all(isinstance(v, (str, int, float)) for v in value):
        return [str(v) for v in value]
    fail(key, f"{key}: expected a list of words, got {value!r}")
    return []


def read_launch(doc: dict, override: str | None, fail: Fail) -> tuple[str, LaunchSpec]:
    """The network mode and the :class:`LaunchSpec` from a file's top level.

    ``override`` is ``pvhpc run --launcher``'s value (None: the file's).
    ``fail(key, message)`` raises the mistake at that key's line.
    """
    spec = LaunchSpec()
    launcher = doc.get("launcher", "local") if override is None else override
    if launcher not in LAUNCHERS:
        fail(
            "launcher",
            f"launcher: {launcher!r} is not one of {', '.join(LAUNCHERS)}"
            + suggest(str(launcher), LAUNCHERS),
        )
    spec.launcher = launcher
    if "pvhpc-command" in doc:
        spec.pvhpc_command = _words(doc["pvhpc-command"], "pvhpc-command", fail)
        if not spec.pvhpc_command:
            fail("pvhpc-command", "pvhpc-command: empty")
    for key in ("ssh-options", "srun-options", "sbatch-options"):
        if key in doc:
            # ~/… as a shell would give it (ssh -F ~/.ssh/beamline.conf)
            words = [os.path.expanduser(w) for w in _words(doc[key], key, fail)]
            setattr(spec, key.replace("-", "_"), words)
    network = doc.get("network", "inherit")
    if isinstance(network, dict):
        for key in network:
            if key not in NETWORK_KEYS:
                fail(
                    "network",
                    f"network: unknown key {key!r}{suggest(str(key), NETWORK_KEYS)}; "
                    f"it takes {', '.join(NETWORK_KEYS)}",
                )
        hosts = network.get("hosts") or {}
        if not isinstance(hosts, dict) or not all(
            isinstance(k, (str, int)) and isinstance(v, str) and v.strip() for k, v in hosts.items()
        ):
            fail("network", "network: hosts: expected a mapping of host names to addresses")
        spec.addresses = {str(k): v.strip() for k, v in hosts.items()}
        at_network = lambda _key, message: fail("network", message)  # noqa: E731
        spec.search = _words(network.get("search") or [], "network: search", at_network)
        spec.name_servers = _words(
            network.get("name-servers") or [], "network: name-servers", at_network
        )
        network = "hosts"
    elif network not in NETWORK_MODES:
        fail("network", f"network: {network!r} is not one of {', '.join(NETWORK_MODES)}")
    return network, spec


def read_host(value: Any, fail: Callable[[str], Any]) -> list[str | int]:
    """A stage's ``host:`` as a list: a name, a node index, or a list of them."""
    items = value if isinstance(value, list) else [value]
    if not items:
        fail("host: an empty list")
    out: list[str | int] = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (str, int)):
            fail(f"host: expected a host name or a node index, got {item!r}")
        if isinstance(item, int):
            if item < 0:
                fail(f"host: node indices start at 0, got {item}")
        elif not re.fullmatch(r"[A-Za-z0-9_.:@%+-]+", item):
            fail(f"host: {item!r} is not a host name")
        out.append(item)
    return out


def _chunks(ids: list[int], n: int) -> list[list[int]]:
    """``ids`` in ``n`` consecutive runs, as even as can be (the first ones longer)."""
    size, extra = divmod(len(ids), n)
    out, start = [], 0
    for k in range(n):
        end = start + size + (1 if k < extra else 0)
        out.append(ids[start:end])
        start = end
    return out


def _part_names(stage: StageSpec, hosts: list[str | int]) -> list[str]:
    names = []
    for k, host in enumerate(hosts):
        name = f"{stage.name}@{host}"
        if hosts.count(host) > 1:
            name += f"#{hosts[: k + 1].count(host)}"
        names.append(name)
    return names


def _split(stage: StageSpec, hosts: list[str | int], fail: Callable[[str], Any]) -> list[StageSpec]:
    """One stage per host for a consumer stage spread over ``hosts`` (see module docs)."""
    args = stage.args
    assert args is not None
    ids = [inst.stage_id for inst in stage.instances]
    if len(hosts) > len(ids):
        fail(
            f"host: {len(hosts)} hosts for {len(ids)} consumer(s); give at most one host per consumer"
        )
    updates, n_sets = args.distributor_updates, args.n_distributor_sets
    offset = args.oid_offset if args.oid_offset > 0 else 0
    parts: list[StageSpec] = []
    for name, host, chunk in zip(_part_names(stage, hosts), hosts, _chunks(ids, len(hosts))):
        argv = [a for a in stage.argv if not a.startswith(_ID_OPTIONS)]
        part_args = argparse.Namespace(**vars(args))
        if chunk == list(range(chunk[0], chunk[0] + len(chunk))):
            argv += [f"--consumer-id={chunk[0]}", f"--n-consumers={len(chunk)}"]
            part_args.consumer_id, part_args.n_consumers = chunk[0], len(chunk)
            part_args.consumer_id_list = None
        else:
            part_args.consumer_id_list = ",".join(map(str, chunk))
            argv.append(f"--consumer-id-list={part_args.consumer_id_list}")
        whole = expected_offset(offset, len(ids), updates, n_sets)
        if offset or whole != expected_offset(0, len(chunk), updates, n_sets):
            argv.append(f"--oid-offset={whole}")
            part_args.oid_offset = whole
        instances = [i for i in stage.instances if i.stage_id in chunk]
        own = {ch for i in instances for ch in (i.output, i.status, i.control) if ch}
        inputs = {ch for i in instances for ch in i.inputs}
        parts.append(
            dataclasses.replace(
                stage,
                name=name,
                group=stage.name,
                host=host,
                argv=argv,
                args=part_args,
                instances=instances,
                provides=[e for e in stage.provides if e.name in own],
                requires=[
                    (e, key)
                    for e, key in stage.requires
                    if key != "input-channel" or e.name in inputs
                ],
                placement=[host],
            )
        )
    return parts


def place(wf: Workflow) -> None:
    """Check each stage's placement against the launcher and split consumer stages
    spread over hosts; raise :class:`WorkflowError` on a mistake.

    With the local launcher, placement is ignored (every stage runs here) and a
    derived network becomes loopback; ``wf.notes`` says so.
    """
    launcher = wf.launch.launcher
    placed = [s for s in wf.stages if s.placement]
    if launcher == "local":
        if placed:
            wf.notes.append(
                "launcher local: every stage runs on this machine (host: placement ignored)"
            )
        if wf.network == "hosts":
            wf.network = "loopback"
            wf.notes.append("launcher local: network loopback instead of the hosts' addresses")
        return
    stages: list[StageSpec] = []
    for stage in wf.stages:

        def fail(message: str, stage=stage) -> None:
            raise WorkflowError(wf.path, stage.line_of("host"), f"stage {stage.name!r}: {message}")

        hosts = stage.placement
        if launcher == "ssh":
            if not hosts:
                fail(
                    "no host: (the ssh launcher starts every stage on a named host; "
                    "host: localhost runs it on this machine, through ssh)"
                )
            for host in hosts:
                if isinstance(host, int):
                    fail(f"host: {host} is a Slurm node index; the ssh launcher needs host names")
        if len(hosts) > 1 and stage.type != "consumer":
            fail(
                f"host: a list ({len(hosts)} hosts) spreads the consumers of a consumer stage; "
                f"a {stage.type} stage runs on one host"
            )
        if len(hosts) > 1:
            stages.extend(_split(stage, hosts, fail))
            continue
        host = hosts[0] if hosts else None
        stage.host = None if host == "auto" else host
        stages.append(stage)
    wf.stages = stages
    names = [s.name for s in stages]
    for stage in stages:
        if names.count(stage.name) > 1:
            raise WorkflowError(
                wf.path,
                stage.line,
                f"stage {stage.name!r}: that name is also a part of another stage",
            )
    if launcher == "ssh":
        used = {str(s.host) for s in stages}
        for host in wf.launch.addresses:
            if host not in used:
                raise WorkflowError(
                    wf.path,
                    None,
                    f"network: hosts: {host!r} is the host of no stage"
                    + suggest(host, sorted(used)),
                )


#: The EPICS variables :func:`network_env` sets (a stage gets all of them).
NETWORK_VARS = (
    "EPICS_PVA_ADDR_LIST",
    "EPICS_PVA_AUTO_ADDR_LIST",
    "EPICS_PVAS_INTF_ADDR_LIST",
    "EPICS_PVAS_BEACON_ADDR_LIST",
    "EPICS_PVAS_AUTO_BEACON_ADDR_LIST",
    "EPICS_CA_ADDR_LIST",
    "EPICS_CA_AUTO_ADDR_LIST",
    "EPICS_CAS_INTF_ADDR_LIST",
    "EPICS_CAS_BEACON_ADDR_LIST",
    "EPICS_CAS_AUTO_BEACON_ADDR_LIST",
)


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(i for i in items if i))


def client_env(spec: LaunchSpec, addresses: list[str]) -> dict[str, str]:
    """The settings of a client that reads the workflow's channels (``pvhpc run``'s
    view, ``pvhpc status`` on the head node): search the hosts and nothing else."""
    search = " ".join(_unique([*addresses, *spec.search]))
    env = {
        "EPICS_PVA_ADDR_LIST": search,
        "EPICS_PVA_AUTO_ADDR_LIST": "NO",
        "EPICS_CA_ADDR_LIST": search,
        "EPICS_CA_AUTO_ADDR_LIST": "NO",
    }
    if spec.name_servers:
        env["EPICS_PVA_NAME_SERVERS"] = " ".join(spec.name_servers)
    return env


def network_env(spec: LaunchSpec, own: str, addresses: list[str]) -> dict[str, str]:
    """The EPICS settings of a stage on the host at address ``own``, in a workflow
    whose hosts are at ``addresses``: search every host (its own too: a stage may
    read a channel of its own host) and ``search:``; serve, and send beacons, on its
    own address only, beacons to the other hosts. Nothing is broadcast."""
    others = " ".join(_unique([a for a in addresses if a != own])) or own
    env = client_env(spec, addresses)
    env.update(
        {
            "EPICS_PVAS_INTF_ADDR_LIST": own,
            "EPICS_PVAS_BEACON_ADDR_LIST": others,
            "EPICS_PVAS_AUTO_BEACON_ADDR_LIST": "NO",
            "EPICS_CAS_INTF_ADDR_LIST": own,
            "EPICS_CAS_BEACON_ADDR_LIST": others,
            "EPICS_CAS_AUTO_BEACON_ADDR_LIST": "NO",
        }
    )
    return env
