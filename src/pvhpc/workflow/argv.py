"""A stage's options in a workflow file, made into its command line.

Values are written as on the command line (numbers, strings), ``true``/``false``
for flags, a mapping for ``processor-args`` (made JSON), lists for comma-separated
options and for ``channel-map``. :func:`build_argv` checks every key against the
command's real parser; :func:`apply_prefix` puts ``--channel-prefix`` before every
channel name the options mention. Mistakes call ``fail(key, message)``.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from ..channel_map import format_channel_map, parse_channel_map
from ..errors import UsageError
from ..options.common import Parser
from .model import StageSpec

__all__ = [
    "MANAGED",
    "PATH_DESTS",
    "apply_prefix",
    "build_argv",
    "dashless",
    "line_for_message",
    "strip_argument",
    "suggest",
]

#: Options whose relative paths are taken relative to the workflow file.
PATH_DESTS = (
    "processor_file",
    "input_file",
    "input_directory",
    "log_file",
    "access_security_file",
)
#: Options ``pvhpc run`` sets itself.
MANAGED = {"report-format": "pvhpc run reads the stages' reports as JSON; remove this option"}


def suggest(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for a close match among ``choices``, else ``''``."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def prefix_channels(text: str, prefix: str) -> str:
    """``pva://x,ca://y,z`` with ``prefix`` before each channel name."""
    items = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        proto, sep, name = item.partition("://")
        items.append(f"{proto}{sep}{prefix}{name}" if sep else f"{prefix}{item}")
    return ",".join(items)


def format_channel_map_entries(entries: list[list[str]]) -> str:
    return ",".join("(" + ",".join(str(f) for f in e) + ")" for e in entries)


def value_text(key: str, value: Any, action: argparse.Action, fail) -> str | None:
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
            return format_channel_map_entries(entries)
        if any(isinstance(v, (dict, list)) for v in value):
            fail(f"{key}: expected a list of names or numbers, got {value!r}")
        return ",".join(str(v) for v in value)
    return str(value)


def expand_default(template: str | None, kind: str, role: str) -> str | None:
    if template == "_":
        return f"pvapy:{kind}:*:{role}"
    return template


def apply_prefix(stage: StageSpec, values: dict[str, Any], prefix: str) -> None:
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
                values[key] = prefix + expand_default(values[key], stage.type, role)
        mc = values.get("metadata-channels")
        if isinstance(mc, list):
            values["metadata-channels"] = [prefix_channels(str(v), prefix) for v in mc]
        elif isinstance(mc, str):
            values["metadata-channels"] = prefix_channels(mc, prefix)
    elif stage.type == "sim":
        values.setdefault("channel-name", "pvapy:image")
        plain("channel-name")
        mpv = values.get("metadata-pv")
        if isinstance(mpv, list):
            values["metadata-pv"] = [prefix_channels(str(v), prefix) for v in mpv]
        elif isinstance(mpv, str):
            values["metadata-pv"] = prefix_channels(mpv, prefix)
    elif stage.type == "mirror":
        cm = values.get("channel-map")
        if isinstance(cm, list) and all(isinstance(e, list) for e in cm):
            cm = format_channel_map_entries(cm)
        if not isinstance(cm, str):
            return
        try:
            mappings = parse_channel_map(cm)
        except UsageError:
            return  # reported with the line when the stage is checked
        values["channel-map"] = format_channel_map(
            [replace(m, dst=prefix + m.dst, src=prefix + m.src) for m in mappings]
        )


def build_argv(stage: StageSpec, parser: Parser, values: dict, fail_at) -> list[str]:
    actions = parser.option_actions()
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
                + suggest(key, long_names)
                + f"; see `pvhpc {stage.type} -h`"
            )
        text = value_text(key, value, action, fail)
        if text is None:
            if value:
                argv.append("--" + key)
            continue
        if action.dest in PATH_DESTS and text and not os.path.isabs(text):
            text = os.path.normpath(os.path.join(stage.base_dir, text))
        argv.append(f"--{key}={text}")
    return argv


def line_for_message(stage: StageSpec, message: str, actions: dict) -> int:
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


def dashless(message: str, actions: dict) -> str:
    """Option names as the workflow file spells them: ``--receiver-queue-size`` →
    ``receiver-queue-size``."""
    return re.sub(
        r"--([a-z][a-z0-9-]*)",
        lambda m: m.group(1) if m.group(0) in actions else m.group(0),
        message,
    )


def strip_argument(message: str) -> str:
    """``argument -nx/--n-x-pixels: bad`` → ``n-x-pixels: bad``."""
    m = re.match(r"argument ([^:]+): (.*)", message, re.S)
    if not m:
        return message
    names = [n for n in m.group(1).split("/") if n.startswith("--")]
    return f"{names[0][2:] if names else m.group(1)}: {m.group(2)}"
