"""Workflow files: a whole streaming workflow in one YAML file, checked before it runs.

A workflow file names its stages (simulator, mirror, consumer groups, collectors)
and gives each the options of its command, long names without the dashes::

    name: single-consumer
    network: loopback            # optional: keep EPICS traffic on 127.0.0.1
    duration: 60                 # optional: stop after this many seconds
    external: [ad:image]         # optional: channels served by something else
    stages:
      consumers:
        type: consumer
        input-channel: pvapy:image
        n-consumers: 2
        processor-file: ../hpcAdImageProcessorExample.py
      sim:
        type: sim
        channel-name: pvapy:image
        frame-rate: 10

:func:`load_workflow` reads and checks everything before anything starts: every
key against the real option parser of its command (``build_parser()`` of
``pvhpc.cli.<type>``), values, processor files and classes, and the channel
graph (every input channel must come from a stage of the workflow or be listed
under ``external``; no channel served twice; no cycles). A mistake raises
:class:`WorkflowError`, a :class:`~pvhpc.errors.UsageError` whose message starts
with ``file:line:`` and names the stage and the bad key or value.

Values: numbers and strings as on the command line; ``true``/``false`` for flags;
a mapping for ``processor-args`` (turned into JSON); lists for comma-separated
options (``metadata-channels: [pva://x, pva://y]``, ``producer-id-list: [1, 2]``)
and for ``channel-map`` (``[[dst, src, pva, 1000], …]``). ``${NAME}`` and
``${NAME:-default}`` in strings are replaced from the environment;
``${WORKFLOW_DIR}`` is the workflow file's directory. Relative paths of
``processor-file``, ``input-file``, ``input-directory`` and ``log-file`` are
relative to the workflow file; everything else (e.g. an ``outputDirectory`` in
``processor-args``) is relative to where ``pvhpc run`` is started.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import yaml

from .channel_map import format_channel_map, parse_channel_map
from .errors import UsageError
from .ids import channel_name, format_id, parse_id_list
from .loopback import LOOPBACK_ENV

__all__ = [
    "WorkflowError",
    "Workflow",
    "Stage",
    "Instance",
    "Endpoint",
    "ConsumerSet",
    "load_workflow",
    "STAGE_TYPES",
    "LOOPBACK_ENV",
]

STAGE_TYPES = ("sim", "mirror", "consumer", "collector")
TOP_KEYS = ("name", "description", "network", "duration", "external", "stages")
STAGE_KEYS = ("type", "env")
NETWORKS = ("inherit", "loopback")
#: Options whose relative paths are taken relative to the workflow file.
PATH_DESTS = ("processor_file", "input_file", "input_directory", "log_file")
#: Options ``pvhpc run`` sets itself.
MANAGED = {"report-format": "pvhpc run reads the stages' reports as JSON; remove this option"}
#: Seconds between status updates of consumers and collectors when the file gives none.
DEFAULT_REPORT_PERIOD = 1.0


class WorkflowError(UsageError):
    """A mistake in a workflow file; the message starts with ``file:line:``."""

    def __init__(self, path: str, line: int | None, message: str):
        self.path = path
        self.line = line
        super().__init__(f"{path}:{line}: {message}" if line else f"{path}: {message}")


# -- YAML with line numbers -----------------------------------------------------------


class _Map(dict):
    """A mapping from the file that remembers the line of itself and of each key."""

    line: int = 0
    lines: dict

    def line_of(self, key: Any) -> int:
        return self.lines.get(key, self.line)


class _Duplicate(Exception):
    def __init__(self, line: int, key: Any):
        self.line = line
        self.key = key


class _Loader(yaml.SafeLoader):
    pass


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> _Map:
    merge_tag = "tag:yaml.org,2002:merge"
    n_own = sum(1 for k, _ in node.value if k.tag != merge_tag)
    loader.flatten_mapping(node)
    n_merged = len(node.value) - n_own
    result = _Map()
    result.line = node.start_mark.line + 1
    result.lines = {}
    own_keys: set = set()
    for i, (key_node, value_node) in enumerate(node.value):
        key = loader.construct_object(key_node, deep=True)
        if i >= n_merged:
            if key in own_keys:
                raise _Duplicate(key_node.start_mark.line + 1, key)
            own_keys.add(key)
        result[key] = loader.construct_object(value_node, deep=True)
        result.lines[key] = key_node.start_mark.line + 1
    return result


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)


def _read_yaml(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise WorkflowError(path, None, f"cannot read the workflow file: {exc.strerror}") from None
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except _Duplicate as exc:
        raise WorkflowError(path, exc.line, f"key {exc.key!r} is given twice") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise WorkflowError(path, line, f"not valid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise WorkflowError(path, None, f"not valid YAML: {exc}") from None


# -- the model ------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """A channel and the protocol it is reached with (``pva`` or ``ca``)."""

    name: str
    protocol: str = "pva"

    def __str__(self) -> str:
        return self.name if self.protocol == "pva" else f"ca://{self.name}"


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
class Stage:
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
    """Stage instances that together see a stream once (SPEC §5): the loss invariant
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
    members: list[tuple[Stage, int]]
    channels: list[str]
    #: (group, None) of the distributor request the members share; None without it.
    distributor: tuple | None = None
    #: Per member (same order): its distributor set name, or None.
    copies: list[str | None] = field(default_factory=list)


@dataclass
class Workflow:
    """A checked workflow: its stages, in file order, and how they connect."""

    path: str
    name: str
    description: str
    network: str
    duration: float | None
    external: list[Endpoint]
    stages: list[Stage]

    def provider(self, endpoint: Endpoint) -> Stage | None:
        """The stage serving ``endpoint`` (None: external or unknown)."""
        for stage in self.stages:
            if endpoint in stage.provides:
                return stage
        return None

    def upstream(self, stage: Stage) -> list[Stage]:
        """Stages whose channels ``stage`` reads."""
        out: list[Stage] = []
        for endpoint, _ in stage.requires:
            p = self.provider(endpoint)
            if p is not None and p is not stage and p not in out:
                out.append(p)
        return out

    def stop_order(self) -> list[Stage]:
        """Stages upstream first (sources, then their readers, …), file order within a level."""
        order: list[Stage] = []
        remaining = list(self.stages)
        while remaining:
            ready = [s for s in remaining if all(u in order for u in self.upstream(s))]
            if not ready:  # a cycle; load_workflow refuses those
                ready = remaining[:1]
            for s in ready:
                order.append(s)
                remaining.remove(s)
        return order

    def start_levels(self) -> list[list[Stage]]:
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

    def start_order(self) -> list[Stage]:
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
                        f"{stage.name} {inst.stage_id}", [], list(inst.inputs), distributor
                    )
                    stage_names[key] = []
                if stage.name not in stage_names[key]:
                    stage_names[key].append(stage.name)
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


# -- loading --------------------------------------------------------------------------

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _substitute(value: Any, env: dict, fail) -> Any:
    if isinstance(value, str):

        def repl(m: re.Match) -> str:
            name, default = m.group(1), m.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            fail(f"${{{name}}} is not set in the environment (give a default: ${{{name}:-…}})")
            return ""

        return _VAR.sub(repl, value)
    if isinstance(value, dict):
        return {k: _substitute(v, env, fail) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, env, fail) for v in value]
    return value


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _cli_module(stage_type: str):
    return importlib.import_module(f"pvhpc.cli.{stage_type}")


class _ParseError(Exception):
    pass


def _raise_parse_error(message: str):
    raise _ParseError(message)


def _option_actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    out = {}
    for action in parser._actions:  # argparse has no public list of actions
        for opt in action.option_strings:
            out[opt] = action
    return out


def _prefix_channels(text: str, prefix: str) -> str:
    """``pva://x,ca://y,z`` with ``prefix`` before each channel name."""
    items = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        proto, sep, name = item.partition("://")
        items.append(f"{proto}{sep}{prefix}{name}" if sep else f"{prefix}{item}")
    return ",".join(items)


def _format_channel_map(entries: list[list[str]]) -> str:
    return ",".join("(" + ",".join(str(f) for f in e) + ")" for e in entries)


def _value_text(key: str, value: Any, action: argparse.Action, fail) -> str | None:
    """The command-line text of one option value (None: flag given, no value)."""
    if action.nargs == 0:
        if not isinstance(value, bool):
            fail(f"{key}: expected true or false, got {value!r}")
        return None
    if value is None:
        fail(f"{key}: no value given")
    if isinstance(value, bool):
        fail(f"{key}: expected a value, not {str(value).lower()}")
    if isinstance(value, dict):
        return json.dumps(value)
    if isinstance(value, list):
        if action.dest == "channel_map":
            entries = [e if isinstance(e, list) else None for e in value]
            if any(e is None for e in entries):
                return ",".join(str(e) for e in value)
            return _format_channel_map(entries)
        if any(isinstance(v, (dict, list)) for v in value):
            fail(f"{key}: expected a list of names or numbers, got {value!r}")
        return ",".join(str(v) for v in value)
    return str(value)


def _expand_default(template: str | None, kind: str, role: str) -> str | None:
    if template == "_":
        return f"pvapy:{kind}:*:{role}"
    return template


def _apply_prefix(stage: Stage, values: dict[str, Any], prefix: str) -> None:
    """Put ``prefix`` before every channel name the stage's options mention."""
    if not prefix:
        return

    def plain(key):
        if isinstance(values.get(key), str):
            values[key] = prefix + values[key]

    if stage.type in ("consumer", "collector"):
        plain("input-channel")
        for role in ("output", "status", "control"):
            key = f"{role}-channel"
            if isinstance(values.get(key), str):
                values[key] = prefix + _expand_default(values[key], stage.type, role)
        mc = values.get("metadata-channels")
        if isinstance(mc, list):
            values["metadata-channels"] = [_prefix_channels(str(v), prefix) for v in mc]
        elif isinstance(mc, str):
            values["metadata-channels"] = _prefix_channels(mc, prefix)
    elif stage.type == "sim":
        values.setdefault("channel-name", "pvapy:image")
        plain("channel-name")
        mpv = values.get("metadata-pv")
        if isinstance(mpv, list):
            values["metadata-pv"] = [_prefix_channels(str(v), prefix) for v in mpv]
        elif isinstance(mpv, str):
            values["metadata-pv"] = _prefix_channels(mpv, prefix)
    elif stage.type == "mirror":
        cm = values.get("channel-map")
        if isinstance(cm, list) and all(isinstance(e, list) for e in cm):
            cm = _format_channel_map(cm)
        if not isinstance(cm, str):
            return
        try:
            mappings = parse_channel_map(cm)
        except UsageError:
            return  # reported with the line when the stage is checked
        values["channel-map"] = format_channel_map(
            [replace(m, dst=prefix + m.dst, src=prefix + m.src) for m in mappings]
        )


def _build_argv(stage: Stage, parser: argparse.ArgumentParser, values: dict, fail_at) -> list[str]:
    actions = _option_actions(parser)
    long_names = [o[2:] for o in actions if o.startswith("--")]
    argv: list[str] = []
    for key, value in values.items():
        line_key = key if key in stage.lines else None

        def fail(msg, key=line_key):
            fail_at(key, msg)

        if not isinstance(key, str):
            fail(f"option names are text, got {key!r}")
        if key in MANAGED:
            fail(f"{key}: {MANAGED[key]}")
        action = actions.get("--" + key)
        if action is None or key in ("help", "version"):
            short = actions.get("-" + key)
            if short is not None and action is None:
                long = next((o for o in short.option_strings if o.startswith("--")), None)
                fail(
                    f"{key!r}: use the long option name {long[2:]!r} "
                    f"(workflow files spell options as --long-name without dashes)"
                )
            fail(
                f"unknown option {key!r} for a {stage.type} stage"
                + _suggest(key, long_names)
                + f"; see `pvhpc {stage.type} -h`"
            )
        text = _value_text(key, value, action, fail)
        if text is None:
            if value:
                argv.append("--" + key)
            continue
        if action.dest in PATH_DESTS and text and not os.path.isabs(text):
            text = os.path.normpath(os.path.join(stage.base_dir, text))
        argv.append(f"--{key}={text}")
    return argv


def _line_for_message(stage: Stage, message: str, actions: dict) -> int:
    """The line of the option a parser or validation message names."""
    m = re.search(r"argument ([^:]+):", message)
    names = m.group(1).split("/") if m else re.findall(r"(--[a-z][a-z0-9-]*)", message)
    for name in names:
        action = actions.get(name.strip())
        options = action.option_strings if action else [name.strip()]
        for opt in options:
            key = opt.lstrip("-")
            if opt.startswith("--") and key in stage.lines:
                return stage.lines[key]
    return stage.line


def _check_stage(stage: Stage) -> None:
    """Type-specific checks beyond the parser, and the stage's channels."""
    args = stage.args
    assert args is not None
    kind = stage.type
    if kind in ("consumer", "collector"):
        from .cli.stage_options import validate

        saved = args.log_level, args.log_file
        args.log_level = args.log_file = None  # validate() configures logging; not here
        try:
            validate(args)
        finally:
            args.log_level, args.log_file = saved
        from .loading import create_processor, load_processor_class

        cls = load_processor_class(args.processor_file, args.processor_class)
        create_processor(cls, args.processor_args)
        spec = args.id_format_spec
        if args.id_format_spec:
            format_id(1, spec)
        if kind == "consumer":
            if args.n_consumers < 1:
                raise UsageError(f"--n-consumers must be >= 1, got {args.n_consumers}")
            if args.consumer_id_list:
                ids = parse_id_list(args.consumer_id_list, "--consumer-id-list")
            else:
                ids = list(range(args.consumer_id, args.consumer_id + args.n_consumers))
        else:
            ids = [args.collector_id]
            producers = parse_id_list(args.producer_id_list, "--producer-id-list")
            if "*" not in args.input_channel and len(producers) > 1:
                raise UsageError(
                    f"--input-channel {args.input_channel!r} has no '*' to replace by each "
                    f"of the {len(producers)} producer ids"
                )
        distributed = any(
            getattr(args, d) is not None
            for d in (
                "distributor_group",
                "distributor_set",
                "distributor_trigger",
                "distributor_updates",
            )
        )
        for i in ids:
            if kind == "consumer":
                inputs = [args.input_channel.replace("*", format_id(i, spec))]
            else:
                inputs = [args.input_channel.replace("*", format_id(p, spec)) for p in producers]
            inst = Instance(
                stage_id=i,
                inputs=inputs,
                output=channel_name(args.output_channel, kind, "output", i, spec),
                status=channel_name(args.status_channel, kind, "status", i, spec),
                control=channel_name(args.control_channel, kind, "control", i, spec),
                distributor=(args.distributor_group, args.distributor_set)
                if distributed and kind == "consumer"
                else None,
            )
            stage.instances.append(inst)
            for ch in inputs:
                stage.requires.append((Endpoint(ch), "input-channel"))
            for ch in (inst.output, inst.status, inst.control):
                if ch:
                    stage.provides.append(Endpoint(ch))
        from .stage import parse_metadata_channels

        for proto, name in parse_metadata_channels(args.metadata_channels):
            stage.requires.append((Endpoint(name, proto), "metadata-channels"))
    elif kind == "sim":
        from .simulator import parse_metadata_pvs

        if args.input_file and not os.path.isfile(args.input_file):
            raise UsageError(f"--input-file: {args.input_file} does not exist")
        if args.input_directory and not os.path.isdir(args.input_directory):
            raise UsageError(f"--input-directory: {args.input_directory} is not a directory")
        stage.provides.append(Endpoint(args.channel_name))
        for m in parse_metadata_pvs(args.metadata_pv):
            stage.provides.append(Endpoint(m.name, m.protocol))
    elif kind == "mirror":
        for m in parse_channel_map(args.channel_map):
            stage.provides.append(Endpoint(m.dst))
            stage.mirrors[m.dst] = Endpoint(m.src, m.provider)
            stage.requires.append((Endpoint(m.src, m.provider), "channel-map"))


def _managed_defaults(stage: Stage, values: dict, actions: dict) -> None:
    """Options ``pvhpc run`` needs and the file did not give (see module docs)."""
    if stage.type in ("consumer", "collector"):
        for role in ("status", "control"):
            values.setdefault(f"{role}-channel", "_")
        period = values.get("report-period")
        if not isinstance(period, (int, float)) or isinstance(period, bool) or period <= 0:
            values["report-period"] = DEFAULT_REPORT_PERIOD
    elif stage.type == "mirror" and "report-period" not in values:
        values["report-period"] = DEFAULT_REPORT_PERIOD
    elif stage.type == "sim" and "report-period" not in values:
        fps = values.get("frame-rate", 20)
        try:
            values["report-period"] = max(1, round(float(fps)))
        except (TypeError, ValueError):
            pass  # the parser reports the bad frame rate


def _load_stage(path: str, name: Any, raw: Any, line: int, env: dict, prefix: str) -> Stage:
    if not isinstance(name, str) or not name.strip():
        raise WorkflowError(path, line, f"stage names are text, got {name!r}")
    if not isinstance(raw, dict):
        raise WorkflowError(
            path, line, f"stage {name!r}: expected a mapping of options, got {raw!r}"
        )
    lines = dict(getattr(raw, "lines", {}))
    stage_type = raw.get("type")
    if stage_type is None:
        raise WorkflowError(
            path, line, f"stage {name!r}: no 'type' (one of {', '.join(STAGE_TYPES)})"
        )
    if stage_type not in STAGE_TYPES:
        raise WorkflowError(
            path,
            lines.get("type", line),
            f"stage {name!r}: unknown type {stage_type!r}"
            + _suggest(str(stage_type), STAGE_TYPES)
            + f"; use one of {', '.join(STAGE_TYPES)}",
        )
    stage_env = raw.get("env") or {}
    if not isinstance(stage_env, dict) or not all(
        isinstance(k, str) and isinstance(v, (str, int, float)) for k, v in stage_env.items()
    ):
        raise WorkflowError(
            path, lines.get("env", line), f"stage {name!r}: env must map names to values"
        )
    stage = Stage(
        name=name,
        type=stage_type,
        line=line,
        options={},
        lines=lines,
        env={k: str(v) for k, v in stage_env.items()},
    )

    def fail_at(key: str | None, message: str):
        raise WorkflowError(path, stage.line_of(key), f"stage {name!r}: {message}")

    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key in STAGE_KEYS:
            continue

        def fail(msg, key=key):
            fail_at(key, msg)

        values[key] = _substitute(value, env, fail)
    try:
        module = _cli_module(stage_type)
    except ImportError:
        fail_at("type", f"stage type {stage_type!r} is not available in this installation")
    parser = module.build_parser()
    actions = _option_actions(parser)
    _managed_defaults(stage, values, actions)
    _apply_prefix(stage, values, prefix)
    stage.options = values
    stage.base_dir = os.path.dirname(os.path.abspath(path))
    stage.argv = _build_argv(stage, parser, values, fail_at)
    if stage_type in ("consumer", "collector"):
        stage.argv.append("--report-format=json")
    parser.error = _raise_parse_error  # type: ignore[method-assign]
    try:
        stage.args = parser.parse_args(stage.argv)
    except _ParseError as exc:
        message = str(exc)
        missing = re.search(r"the following arguments are required: (.*)", message)
        if missing:
            keys = [o.lstrip("-") for o in missing.group(1).split("/") if o.startswith("--")]
            fail_at(None, f"missing option {', '.join(keys) or missing.group(1)}")
        line = _line_for_message(stage, message, actions)
        raise WorkflowError(path, line, f"stage {name!r}: {_strip_argument(message)}") from None
    except SystemExit:
        fail_at(None, "the options were refused by the command's parser")
    try:
        _check_stage(stage)
    except UsageError as exc:
        line = _line_for_message(stage, str(exc), actions)
        raise WorkflowError(path, line, f"stage {name!r}: {_dashless(str(exc), actions)}") from None
    return stage


def _dashless(message: str, actions: dict) -> str:
    """Option names as the workflow file spells them: ``--receiver-queue-size`` →
    ``receiver-queue-size``."""
    return re.sub(
        r"--([a-z][a-z0-9-]*)",
        lambda m: m.group(1) if m.group(0) in actions else m.group(0),
        message,
    )


def _strip_argument(message: str) -> str:
    """``argument -nx/--n-x-pixels: bad`` → ``n-x-pixels: bad``."""
    m = re.match(r"argument ([^:]+): (.*)", message, re.S)
    if not m:
        return message
    names = [n for n in m.group(1).split("/") if n.startswith("--")]
    return f"{names[0][2:] if names else m.group(1)}: {m.group(2)}"


def _parse_endpoint(text: str) -> Endpoint:
    proto, sep, name = text.partition("://")
    if sep:
        return Endpoint(name, proto.lower())
    return Endpoint(text, "pva")


def load_workflow(path: str, channel_prefix: str = "", environ: dict | None = None) -> Workflow:
    """Read and check a workflow file; raise :class:`WorkflowError` on any mistake.

    ``channel_prefix`` is put before every channel name in the file (to run a copy
    of a workflow beside another). Nothing is started; processor files are imported
    and processor classes instantiated once, to check their arguments.
    """
    doc = _read_yaml(path)
    if doc is None:
        raise WorkflowError(path, None, "the file is empty; it needs at least 'stages:'")
    if not isinstance(doc, dict):
        raise WorkflowError(path, 1, "expected a mapping with 'stages:' at the top")
    lines = getattr(doc, "lines", {})
    for key in doc:
        if key not in TOP_KEYS:
            raise WorkflowError(
                path,
                lines.get(key),
                f"unknown key {key!r}"
                + _suggest(str(key), TOP_KEYS)
                + f"; the top level takes {', '.join(TOP_KEYS)}",
            )
    env = dict(os.environ if environ is None else environ)
    env["WORKFLOW_DIR"] = os.path.dirname(os.path.abspath(path))
    name = doc.get("name", os.path.splitext(os.path.basename(path))[0])
    description = doc.get("description", "")
    if not isinstance(name, str) or not isinstance(description, str):
        raise WorkflowError(
            path, lines.get("name" if not isinstance(name, str) else "description"), "expected text"
        )
    network = doc.get("network", "inherit")
    if network not in NETWORKS:
        raise WorkflowError(
            path,
            lines.get("network"),
            f"network: {network!r} is not one of {', '.join(NETWORKS)}",
        )
    duration = doc.get("duration")
    if duration is not None and (
        isinstance(duration, bool) or not isinstance(duration, (int, float)) or duration <= 0
    ):
        raise WorkflowError(
            path, lines.get("duration"), f"duration: expected seconds > 0, got {duration!r}"
        )
    external_raw = doc.get("external") or []
    if isinstance(external_raw, str):
        external_raw = [external_raw]
    if not isinstance(external_raw, list) or not all(isinstance(e, str) for e in external_raw):
        raise WorkflowError(path, lines.get("external"), "external: expected a list of channels")
    external = []
    for text in external_raw:
        endpoint = _parse_endpoint(text)
        external.append(Endpoint(channel_prefix + endpoint.name, endpoint.protocol))
    stages_raw = doc.get("stages")
    if not isinstance(stages_raw, dict) or not stages_raw:
        raise WorkflowError(
            path,
            lines.get("stages", 1),
            "stages: expected a mapping of stage names to their options",
        )
    stage_lines = getattr(stages_raw, "lines", {})
    stages = [
        _load_stage(path, n, raw, stage_lines.get(n, 1), env, channel_prefix)
        for n, raw in stages_raw.items()
    ]
    workflow = Workflow(
        path=path,
        name=name,
        description=description.strip(),
        network=network,
        duration=float(duration) if duration is not None else None,
        external=external,
        stages=stages,
    )
    _check_graph(workflow)
    return workflow


def _check_graph(wf: Workflow) -> None:
    served: dict[Endpoint, Stage | None] = {e: None for e in wf.external}
    for stage in wf.stages:
        for endpoint in stage.provides:
            if endpoint in served:
                other = served[endpoint]
                where = f"stage {other.name!r} (line {other.line})" if other else "external"
                hint = "give the stages different channel names"
                if re.match(r"pvapy:(consumer|collector):", endpoint.name):
                    hint = (
                        "that is a default channel name: give one of the stages its own "
                        "status-channel/control-channel, or different ids"
                    )
                raise WorkflowError(
                    wf.path,
                    stage.line,
                    f"stage {stage.name!r}: channel {endpoint} is also served by {where}; {hint}",
                )
            served[endpoint] = stage
    known = [str(e) for e in served]
    for stage in wf.stages:
        for endpoint, key in stage.requires:
            if endpoint not in served:
                raise WorkflowError(
                    wf.path,
                    stage.line_of(key),
                    f"stage {stage.name!r}: {key} {endpoint} is served by no stage of this "
                    f"workflow" + _suggest(str(endpoint), known) + "; add the stage that "
                    "serves it, or list the channel under 'external:'",
                )
            if served[endpoint] is stage:
                raise WorkflowError(
                    wf.path,
                    stage.line_of(key),
                    f"stage {stage.name!r}: {key} {endpoint} is the stage's own channel",
                )
    # Cycles: a stage that can never have all its inputs started before it.
    done: list[Stage] = []
    remaining = list(wf.stages)
    while remaining:
        ready = [s for s in remaining if all(u in done for u in wf.upstream(s))]
        if not ready:
            s = remaining[0]
            raise WorkflowError(
                wf.path,
                s.line,
                f"stage {s.name!r}: its channels form a cycle with "
                + ", ".join(repr(r.name) for r in remaining if r is not s),
            )
        for s in ready:
            done.append(s)
            remaining.remove(s)
