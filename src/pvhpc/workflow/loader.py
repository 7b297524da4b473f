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

import os
import re
from typing import Any

from ..channel_map import parse_channel_map
from ..endpoints import Endpoint, parse_channel_list, parse_endpoint
from ..errors import UsageError
from ..loading import create_processor, load_processor_class
from ..options import collector as collector_options
from ..options import consumer as consumer_options
from ..options import mirror as mirror_options
from ..options import sim as sim_options
from ..options.common import ParseError
from .argv import apply_prefix, build_argv, dashless, line_for_message, strip_argument, suggest
from .model import Instance, StageSpec, Workflow, WorkflowError
from .placement import LAUNCH_KEYS, place, read_host, read_launch
from .yamlfile import read_yaml

__all__ = ["load_workflow", "STAGE_TYPES"]

STAGE_TYPES = ("sim", "mirror", "consumer", "collector")
TOP_KEYS = ("name", "description", "network", "duration", "external", "stages", *LAUNCH_KEYS)
STAGE_KEYS = ("type", "env", "host")
#: Seconds between status updates of consumers and collectors when the file gives none.
DEFAULT_REPORT_PERIOD = 1.0


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


#: The option parser of each stage type: the command's own.
PARSERS = {
    "sim": sim_options.build_parser,
    "mirror": mirror_options.build_parser,
    "consumer": consumer_options.build_parser,
    "collector": collector_options.build_parser,
}


def _check_stage(stage: StageSpec) -> None:
    """Type-specific checks beyond the parser, and the stage's channels."""
    args = stage.args
    assert args is not None
    kind = stage.type
    if kind in ("consumer", "collector"):
        if kind == "consumer":
            configs = consumer_options.consumer_configs(args)
            inputs_of = {c.stage_id: [c.input_channel] for c in configs}
        else:
            config, _, channels = collector_options.collector_config(args)
            configs, inputs_of = [config], {config.stage_id: channels}
        create_processor(
            load_processor_class(args.processor_file, args.processor_class), args.processor_args
        )
        for config in configs:
            inst = Instance(
                stage_id=config.stage_id,
                inputs=inputs_of[config.stage_id],
                output=config.output_channel,
                status=config.status_channel,
                control=config.control_channel,
                distributor=(config.distributor_group, config.distributor_set)
                if config.distributor and kind == "consumer"
                else None,
            )
            stage.instances.append(inst)
            for ch in inst.inputs:
                stage.requires.append((Endpoint(ch), "input-channel"))
            for ch in (inst.output, inst.status, inst.control):
                if ch:
                    stage.provides.append(Endpoint(ch))
        for endpoint in configs[0].metadata_channels:
            stage.requires.append((endpoint, "metadata-channels"))
    elif kind == "sim":
        if args.input_file and not os.path.isfile(args.input_file):
            raise UsageError(f"--input-file: {args.input_file} does not exist")
        if args.input_directory and not os.path.isdir(args.input_directory):
            raise UsageError(f"--input-directory: {args.input_directory} is not a directory")
        stage.provides.append(Endpoint(args.channel_name))
        stage.provides.extend(parse_channel_list(args.metadata_pv, "--metadata-pv"))
    elif kind == "mirror":
        for m in parse_channel_map(args.channel_map):
            stage.provides.append(Endpoint(m.dst))
            stage.mirrors[m.dst] = Endpoint(m.src, m.provider)
            stage.requires.append((Endpoint(m.src, m.provider), "channel-map"))


def _managed_defaults(stage: StageSpec, values: dict, actions: dict) -> None:
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


def _load_stage(path: str, name: Any, raw: Any, line: int, env: dict, prefix: str) -> StageSpec:
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
            + suggest(str(stage_type), STAGE_TYPES)
            + f"; use one of {', '.join(STAGE_TYPES)}",
        )
    stage_env = raw.get("env") or {}
    if not isinstance(stage_env, dict) or not all(
        isinstance(k, str) and isinstance(v, (str, int, float)) for k, v in stage_env.items()
    ):
        raise WorkflowError(
            path, lines.get("env", line), f"stage {name!r}: env must map names to values"
        )
    stage = StageSpec(
        name=name,
        type=stage_type,
        line=line,
        options={},
        lines=lines,
        env={k: str(v) for k, v in stage_env.items()},
    )

    def fail_at(key: str | None, message: str):
        raise WorkflowError(path, stage.line_of(key), f"stage {name!r}: {message}")

    if raw.get("host") is not None:
        stage.placement = read_host(
            _substitute(raw["host"], env, lambda m: fail_at("host", m)),
            lambda m: fail_at("host", m),
        )

    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key in STAGE_KEYS:
            continue

        def fail(msg, key=key):
            fail_at(key, msg)

        values[key] = _substitute(value, env, fail)
    parser = PARSERS[stage_type]()
    actions = parser.option_actions()
    _managed_defaults(stage, values, actions)
    apply_prefix(stage, values, prefix)
    stage.options = values
    stage.base_dir = os.path.dirname(os.path.abspath(path))
    stage.argv = build_argv(stage, parser, values, fail_at)
    if stage_type in ("consumer", "collector", "mirror", "sim"):
        # pvhpc run reads the stages' numbers from their JSON reports.
        stage.argv.append("--report-format=json")
    parser.raise_errors = True
    try:
        stage.args = parser.parse_args(stage.argv)
    except ParseError as exc:
        message = str(exc)
        missing = re.search(r"the following arguments are required: (.*)", message)
        if missing:
            keys = [o.lstrip("-") for o in missing.group(1).split("/") if o.startswith("--")]
            fail_at(None, f"missing option {', '.join(keys) or missing.group(1)}")
        line = line_for_message(stage, message, actions)
        raise WorkflowError(path, line, f"stage {name!r}: {strip_argument(message)}") from None
    except SystemExit:
        fail_at(None, "the options were refused by the command's parser")
    try:
        _check_stage(stage)
    except UsageError as exc:
        line = line_for_message(stage, str(exc), actions)
        raise WorkflowError(path, line, f"stage {name!r}: {dashless(str(exc), actions)}") from None
    return stage


def load_workflow(
    path: str, channel_prefix: str = "", environ: dict | None = None, launcher: str | None = None
) -> Workflow:
    """Read and check a workflow file; raise :class:`WorkflowError` on any mistake.

    ``channel_prefix`` is put before every channel name in the file (to run a copy
    of a workflow beside another); ``launcher`` replaces the file's ``launcher:``.
    Nothing is started; processor files are imported and processor classes
    instantiated once, to check their arguments. Consumer stages spread over
    several hosts come back as one stage per host (:func:`~.placement.place`).
    """
    doc = read_yaml(path)
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
                + suggest(str(key), TOP_KEYS)
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

    def fail_top(key: str, message: str):
        raise WorkflowError(path, lines.get(key), message)

    network, launch = read_launch(doc, launcher, fail_top)
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
        endpoint = parse_endpoint(text, "external")
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
        launch=launch,
    )
    _check_graph(workflow)
    place(workflow)
    return workflow


def _check_distributor_groups(wf: Workflow, served: dict) -> None:
    """Consumers of two channels of one mirror or simulator in the same distributor
    group: the plugin's groups are server-wide, so they would share one rotation and
    frames of each channel would reach no one (a group left out is named after the
    channel, and never collides)."""
    seen: dict[tuple, tuple[StageSpec, str]] = {}
    for stage in wf.stages:
        for inst in stage.instances:
            if stage.type != "consumer" or not inst.distributor or not inst.distributor[0]:
                continue
            server = served.get(Endpoint(inst.inputs[0]))
            if server is None or server.type not in ("mirror", "sim"):
                continue
            key = (server.name, inst.distributor[0])
            other, channel = seen.setdefault(key, (stage, inst.inputs[0]))
            if channel != inst.inputs[0]:
                raise WorkflowError(
                    wf.path,
                    stage.line_of("distributor-group"),
                    f"stage {stage.name!r} reads {inst.inputs[0]} and stage {other.name!r} "
                    f"reads {channel}, both served by stage {server.name!r}, through the "
                    f"distributor in the same group {inst.distributor[0]!r}: the plugin's "
                    f"groups span the whole server, so frames of each channel would go to "
                    f"consumers of the other and reach no one; give each channel its own "
                    f"distributor-group (or leave it out: the group is then the channel's "
                    f"name)",
                )


def _check_graph(wf: Workflow) -> None:
    served: dict[Endpoint, StageSpec | None] = {e: None for e in wf.external}
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
                    f"workflow" + suggest(str(endpoint), known) + "; add the stage that "
                    "serves it, or list the channel under 'external:'",
                )
            if served[endpoint] is stage:
                raise WorkflowError(
                    wf.path,
                    stage.line_of(key),
                    f"stage {stage.name!r}: {key} {endpoint} is the stage's own channel",
                )
    _check_distributor_groups(wf, served)
    # Cycles: a stage that can never have all its inputs started before it.
    _, remaining = wf.upstream_order()
    if remaining:
        s = remaining[0]
        raise WorkflowError(
            wf.path,
            s.line,
            f"stage {s.name!r}: its channels form a cycle with "
            + ", ".join(repr(r.name) for r in remaining if r is not s),
        )
