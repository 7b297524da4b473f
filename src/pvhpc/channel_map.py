"""The mirror server's channel map: ``(dst,src[,pva|ca[,srcQueueSize[,nSrcMonitors,srcRequest]]]),(…)``.

Each parenthesised group maps one mirrored channel ``dst`` (served by the mirror)
to its source channel ``src``:

* ``pva`` or ``ca`` (case does not matter) is the source provider [pva];
* ``srcQueueSize`` is the server-side queue asked of the source,
  ``record[queueSize=N]`` (0 = none) [0];
* ``nSrcMonitors,srcRequest`` open that many monitors on the source, each with the
  request ``srcRequest`` — typically a distributor request such as
  ``_[pydistributor=updates:1]``, so that the source server splits its updates
  between the monitors, all of which feed ``dst``. The request is the last field
  and runs to the group's closing parenthesis, so it may contain commas and
  parentheses: ``field(value,timeStamp)`` is fine.

:func:`parse_channel_map` turns the text into :class:`ChannelMapping` objects or
raises :class:`~pvhpc.errors.UsageError` with one line that names the bad part.
:meth:`ChannelMapping.format` writes a mapping back in the same syntax.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import UsageError

__all__ = ["ChannelMapping", "parse_channel_map", "format_channel_map", "PROVIDERS"]

PROVIDERS = ("pva", "ca")
# The distributor part of a request, ``_[pydistributor=...]`` (any plugin name).
_DISTRIBUTOR = re.compile(r"(_\[\s*\w*distributor\s*=)([^\]]*)\]")
SYNTAX = "(dst,src[,pva|ca[,srcQueueSize[,nSrcMonitors,srcRequest]]])"

# Characters that would make a name ambiguous inside the map, or are never part of
# a channel name.
_BAD_NAME = re.compile(r"[\s,()\[\]{}\"']")
_UINT = re.compile(r"^[0-9]+$")
_MAX_INT = 2**31 - 1


@dataclass(frozen=True)
class ChannelMapping:
    """One mirrored channel: ``dst`` served with the latest object of ``src``.

    ``src_request`` is the request text as the user wrote it (None if not given);
    :meth:`monitor_request` builds the full request used for each source monitor.
    """

    dst: str
    src: str
    provider: str = "pva"
    src_queue_size: int = 0
    n_src_monitors: int = 1
    src_request: str | None = None

    def monitor_request(self) -> str:
        """The request for each source monitor: queue part and field part.

        A ``srcRequest`` that is not already ``field(...)``/``record[...]``-shaped
        (for example ``_[pydistributor=updates:1]`` or ``value,timeStamp``) is
        wrapped in ``field(...)``. ``record[queueSize=N]`` is prepended when a source
        queue was asked for, unless the request already has its own ``record[...]``.
        A distributor part without ``group:`` is given ``group:<src>``, so that the
        monitors of two mirrored channels of one source server never share a group.
        """
        request = (self.src_request or "").strip()
        if not request:
            field = "field()"
        elif "field(" in request or request.startswith("record["):
            field = request
        else:
            field = f"field({request})"
        # A distributor request without a group gets one named after the source
        # channel: the plugin's groups are server-wide (see StageConfig.monitor_request).
        field = _DISTRIBUTOR.sub(
            lambda m: (
                m.group(0)
                if re.search(r"(^|;)\s*group:", m.group(2))
                else f"{m.group(1)}group:{self.src};{m.group(2)}]"
            ),
            field,
        )
        if self.src_queue_size > 0 and "record[" not in field:
            return f"record[queueSize={self.src_queue_size}]{field}"
        return field

    def format(self) -> str:
        """This mapping in channel-map syntax, as short as it can be written."""
        parts = [self.dst, self.src]
        if self.src_request is not None:
            parts += [
                self.provider,
                str(self.src_queue_size),
                str(self.n_src_monitors),
                self.src_request,
            ]
        elif self.src_queue_size:
            parts += [self.provider, str(self.src_queue_size)]
        elif self.provider != "pva":
            parts.append(self.provider)
        return "(" + ",".join(parts) + ")"

    def describe(self) -> str:
        """A one-line human description, for the start-up banner and logs."""
        text = f"{self.dst} <- {self.provider}://{self.src}"
        extras = []
        if self.src_queue_size:
            extras.append(f"source queue {self.src_queue_size}")
        if self.n_src_monitors > 1 or self.src_request:
            extras.append(f"{self.n_src_monitors} monitor(s) with {self.monitor_request()}")
        return text + (f" ({', '.join(extras)})" if extras else "")


def format_channel_map(mappings: list[ChannelMapping]) -> str:
    """The whole map in channel-map syntax; :func:`parse_channel_map` reads it back."""
    return ",".join(m.format() for m in mappings)


def parse_channel_map(text: str | None, option: str = "--channel-map") -> list[ChannelMapping]:
    """Parse a channel map into mappings, in the order given.

    Raises :class:`UsageError` naming ``option`` and the bad part for anything
    malformed: no groups, unbalanced parentheses, text outside groups, empty or
    unusable names, an unknown provider, non-integer or negative numbers,
    ``nSrcMonitors`` without ``srcRequest``, several monitors on a CA source, or a
    ``dst`` that appears twice. Never raises anything else.
    """
    source = "" if text is None else str(text)
    groups = _split_groups(source, option)
    mappings = [_parse_group(body, index, option) for index, body in enumerate(groups, 1)]
    seen: dict[str, int] = {}
    for index, mapping in enumerate(mappings, 1):
        if mapping.dst in seen:
            raise UsageError(
                f"{option}: channel {mapping.dst!r} is mirrored twice "
                f"(mappings {seen[mapping.dst]} and {index})"
            )
        seen[mapping.dst] = index
    return mappings


def _split_groups(text: str, option: str) -> list[str]:
    """Return the bodies of the top-level ``(...)`` groups, checking what lies between."""
    if not text.strip():
        raise UsageError(f"{option}: empty channel map; expected {SYNTAX},(...)")
    groups: list[str] = []
    i, n = 0, len(text)
    expect_group = True
    while True:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            if expect_group:
                raise UsageError(
                    f"{option}: {text!r} ends with ',' but no mapping follows; expected {SYNTAX}"
                )
            return groups
        if not expect_group:
            if text[i] == ")":
                raise UsageError(
                    f"{option}: unbalanced parentheses in {text!r}: ')' at position {i + 1} "
                    "closes nothing"
                )
            if text[i] != ",":
                raise UsageError(
                    f"{option}: unexpected {text[i]!r} at position {i + 1} of {text!r}; "
                    "separate mappings with ','"
                )
            i += 1
            expect_group = True
            continue
        if text[i] == ")":
            raise UsageError(
                f"{option}: unbalanced parentheses in {text!r}: ')' at position {i + 1} "
                "closes nothing"
            )
        if text[i] != "(":
            raise UsageError(
                f"{option}: expected '(' at position {i + 1} of {text!r}; each mapping is {SYNTAX}"
            )
        start = i
        depth = 0
        while i < n:
            ch = text[i]
            if ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
                if depth == 0:
                    break
            i += 1
        if i >= n:
            raise UsageError(
                f"{option}: unbalanced parentheses in {text!r}: '(' at position {start + 1} "
                "is never closed"
            )
        groups.append(text[start + 1 : i])
        i += 1
        expect_group = False


def _split_fields(body: str) -> list[str]:
    """Split a group body on commas outside nested parentheses and brackets."""
    parts, depth, current = [], 0, []
    for ch in body:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def _parse_group(body: str, index: int, option: str) -> ChannelMapping:
    where = f"{option}: mapping {index} {'(' + body + ')'!r}"
    parts = _split_fields(body)
    if len(parts) > 6:
        # The request is the last field and may itself contain top-level commas
        # (``value,timeStamp``).
        parts = parts[:5] + [",".join(parts[5:])]
    parts = [p.strip() for p in parts]
    if len(parts) < 2:
        raise UsageError(f"{where}: expected at least dst and src, as in {SYNTAX}")
    dst = _name(parts[0], "dst", where)
    src = _name(parts[1], "src", where)
    provider = "pva"
    if len(parts) > 2:
        provider = parts[2].lower()
        if provider not in PROVIDERS:
            raise UsageError(f"{where}: provider {parts[2]!r} is not pva or ca")
    queue = 0
    if len(parts) > 3:
        queue = _uint(parts[3], "srcQueueSize", where)
    n_monitors, request = 1, None
    if len(parts) == 5:
        raise UsageError(
            f"{where}: nSrcMonitors {parts[4]!r} given without srcRequest "
            "(e.g. _[pydistributor=updates:1])"
        )
    if len(parts) == 6:
        n_monitors = _uint(parts[4], "nSrcMonitors", where)
        if n_monitors < 1:
            raise UsageError(f"{where}: nSrcMonitors {parts[4]!r} must be at least 1")
        request = parts[5]
        if not request:
            raise UsageError(f"{where}: empty srcRequest")
        if not _balanced(request):
            raise UsageError(f"{where}: srcRequest {request!r} has unbalanced brackets")
        if provider == "ca" and n_monitors > 1:
            raise UsageError(
                f"{where}: {n_monitors} monitors on a CA source would each get every "
                "update; several source monitors need a pva source with a distributor"
            )
    return ChannelMapping(dst, src, provider, queue, n_monitors, request)


def _name(value: str, what: str, where: str) -> str:
    if not value:
        raise UsageError(f"{where}: empty {what} channel name")
    bad = _BAD_NAME.search(value)
    if bad:
        raise UsageError(f"{where}: {what} channel name {value!r} may not contain {bad.group()!r}")
    return value


def _uint(value: str, what: str, where: str) -> int:
    if not _UINT.match(value):
        raise UsageError(f"{where}: {what} {value!r} is not a non-negative integer")
    number = int(value)
    if number > _MAX_INT:
        raise UsageError(f"{where}: {what} {value!r} is too large (at most {_MAX_INT})")
    return number


def _balanced(text: str) -> bool:
    stack = []
    pairs = {")": "(", "]": "["}
    for ch in text:
        if ch in "([":
            stack.append(ch)
        elif ch in ")]":
            if not stack or stack.pop() != pairs[ch]:
                return False
    return not stack
