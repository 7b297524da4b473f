"""Id lists (``1,2,5``, ``range(1,5)``) and channel-name templates (``*`` and ``_``)."""

from __future__ import annotations

import re

from .errors import UsageError

__all__ = ["parse_id_list", "format_id", "channel_name", "DEFAULT_CHANNEL"]

DEFAULT_CHANNEL = "_"

_RANGE = re.compile(r"^\s*range\s*\(\s*([^)]*)\)\s*$")


def parse_id_list(text: str, option: str = "--consumer-id-list") -> list[int]:
    """Parse ``1,2,5`` or ``range(first,last+1[,step])`` into a list of ids.

    Raises :class:`UsageError` naming ``option`` on anything else, including an empty
    list, non-integers, a zero step, or duplicate ids.
    """
    text = (text or "").strip()
    match = _RANGE.match(text)
    try:
        if match:
            parts = [int(p) for p in match.group(1).split(",")]
            if not 1 <= len(parts) <= 3:
                raise ValueError
            ids = list(range(*parts))
        else:
            ids = [int(p) for p in text.split(",")]
    except ValueError:
        raise UsageError(
            f"{option}: {text!r} is not a list of integer ids like 1,2,5 or range(1,5)"
        ) from None
    if not ids:
        raise UsageError(f"{option}: {text!r} gives no ids")
    if len(set(ids)) != len(ids):
        raise UsageError(f"{option}: {text!r} repeats an id")
    return ids


def format_id(value: int, spec: str | None) -> str:
    """Format an id for a channel name with ``--id-format-spec`` (e.g. ``03d``)."""
    if not spec:
        return str(value)
    try:
        return format(value, spec)
    except (ValueError, TypeError):
        raise UsageError(f"--id-format-spec: {spec!r} is not a valid integer format") from None


def channel_name(
    template: str | None, kind: str, role: str, value: int, spec: str | None
) -> str | None:
    """Expand a channel option: ``*`` becomes the formatted id; ``_`` the default name.

    ``kind`` is ``consumer`` or ``collector``, ``role`` is ``output``, ``status`` or
    ``control``. Returns None when the option was not given.
    """
    if not template:
        return None
    if template == DEFAULT_CHANNEL:
        return f"pvapy:{kind}:{format_id(value, spec)}:{role}"
    return template.replace("*", format_id(value, spec))
