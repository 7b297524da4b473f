"""Reading and steering channels from Python: what ``pvhpc get``, ``monitor`` and
``control`` do, as functions.

:func:`send_command` puts a command on a stage's control channel and returns the
stage's answer; :func:`format_value` and :func:`frame_summary` describe a channel's
value readably (an area-detector frame as its id, dimensions, type, pixel statistics,
timestamps and attributes rather than its pixels). :class:`NoAnswer` means the
channel did not answer in time.
"""

from __future__ import annotations

import datetime
import queue
import time
from typing import Any

import numpy as np
import pvaccess as pva

from .errors import UsageError
from .loopback import search_settings

__all__ = [
    "COMMANDS",
    "NoAnswer",
    "Refused",
    "send_command",
    "open_channel",
    "fetch",
    "format_value",
    "format_structure",
    "frame_summary",
    "frame_line",
    "is_frame",
]

#: Control commands of every stage; ``dump`` is the flight recorder's (``pvhpc record
#: --ring``), which other stages answer as unknown.
COMMANDS = ("configure", "reset_stats", "get_stats", "stop", "restart", "dump")
_ARRAY_ITEMS = 8
_LIST_ITEMS = 16


class NoAnswer(Exception):
    """The channel did not answer in time (exit status 1)."""


class Refused(NoAnswer):
    """The stage's server refused the put: its access security rules do not let this
    user, from this host, write the control channel. The command was not run."""


def _is_timestamp(value: Any) -> bool:
    return isinstance(value, dict) and "secondsPastEpoch" in value and "nanoseconds" in value


def _timestamp_text(ts: dict) -> str:
    seconds = int(ts.get("secondsPastEpoch", 0))
    nanos = int(ts.get("nanoseconds", 0))
    if seconds == 0 and nanos == 0:
        return "0 (not set)"
    when = datetime.datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M:%S")
    text = f"{when}.{nanos:09d}"
    if ts.get("userTag"):
        text += f" (userTag {ts['userTag']})"
    return text


def _array_text(values: Any) -> str:
    array = np.asarray(values)
    n = array.size
    if n == 0:
        return "[] (empty)"
    shown = array.ravel()[:_ARRAY_ITEMS].tolist()
    body = ", ".join(repr(v) if isinstance(v, str) else str(v) for v in shown)
    if n <= _ARRAY_ITEMS:
        return f"[{body}]"
    text = f"[{body}, …] ({n} items, {array.dtype}"
    if array.dtype.kind in "biuf":
        text += f", min {array.min()}, max {array.max()}"
    return text + ")"


def _union(value: tuple) -> tuple[str, Any] | None:
    selected = value[0] if value else {}
    if not isinstance(selected, dict) or not selected:
        return None
    return next(iter(selected.items()))


def _scalar_text(value: Any) -> str:
    if isinstance(value, str):
        return repr(value) if value == "" or value != value.strip() else value
    if isinstance(value, float):
        return f"{value:.10g}"
    return str(value)


def format_structure(value: dict, indent: int = 2) -> list[str]:
    """Indented ``name: value`` lines for a structure (nested dicts from ``PvObject.get()``)."""
    pad = " " * indent
    lines: list[str] = []
    for key, field in value.items():
        if _is_timestamp(field):
            lines.append(f"{pad}{key}: {_timestamp_text(field)}")
        elif isinstance(field, dict):
            if not field:
                lines.append(f"{pad}{key}: {{}}")
            else:
                lines.append(f"{pad}{key}:")
                lines.extend(format_structure(field, indent + 2))
        elif isinstance(field, tuple):
            chosen = _union(field)
            if chosen is None:
                lines.append(f"{pad}{key}: (empty union)")
            else:
                name, inner = chosen
                lines.extend(format_structure({f"{key}.{name}": inner}, indent))
        elif isinstance(field, list) and field and all(isinstance(v, dict) for v in field):
            lines.append(f"{pad}{key}: {len(field)} item(s)")
            for i, item in enumerate(field[:_LIST_ITEMS]):
                lines.append(f"{pad}  [{i}]")
                lines.extend(format_structure(item, indent + 4))
            if len(field) > _LIST_ITEMS:
                lines.append(f"{pad}  … {len(field) - _LIST_ITEMS} more")
        elif isinstance(field, (list, np.ndarray)):
            lines.append(f"{pad}{key}: {_array_text(field)}")
        else:
            lines.append(f"{pad}{key}: {_scalar_text(field)}")
    return lines


def is_frame(value: dict) -> bool:
    return (
        isinstance(value.get("value"), tuple)
        and "dimension" in value
        and "uniqueId" in value
        and "attribute" in value
    )


def _attribute_value(attr: dict) -> Any:
    value = attr.get("value")
    if isinstance(value, tuple):
        chosen = _union(value)
        value = chosen[1] if chosen else None
    if isinstance(value, dict):
        value = next(iter(value.values()), None) if value else None
    if isinstance(value, (list, np.ndarray)):
        return _array_text(value)
    return _scalar_text(value) if value is not None else "(empty)"


def _pixels(pv: Any) -> tuple[str, str]:
    """(type text, statistics text) of a frame's pixels, decompressing if needed."""
    from .ntnda import get_image

    try:
        image = get_image(pv)
    except Exception as exc:  # noqa: BLE001 - show what is wrong instead of failing
        return "?", f"cannot read the pixels: {exc}"
    if image.size == 0:
        return str(image.dtype), "none (empty frame)"
    data = image.astype(np.float64, copy=False) if image.dtype.kind == "b" else image
    return (
        f"{image.dtype}, {image.size} elements",
        f"min {data.min():.6g}  max {data.max():.6g}  mean {float(data.mean()):.6g}",
    )


def frame_summary(pv: Any, value: dict | None = None) -> list[str]:
    """Readable lines for an NTNDArray frame (no pixel dump)."""
    value = value if value is not None else pv.get()
    dims = [int(d.get("size", 0)) for d in value.get("dimension") or []]
    axes = {2: " (x, y)", 3: ""}.get(len(dims), "")
    chosen = _union(value["value"])
    field_name = chosen[0] if chosen else "(none)"
    codec = (value.get("codec") or {}).get("name") or "none"
    dtype, stats = _pixels(pv)
    lines = [
        f"  uniqueId:       {value.get('uniqueId')}",
        f"  dimensions:     {' x '.join(map(str, dims)) or '(none)'}{axes}",
        f"  data type:      {dtype} ({field_name})",
        f"  codec:          {codec} (compressed {value.get('compressedSize', 0)} B, "
        f"uncompressed {value.get('uncompressedSize', 0)} B)",
        f"  pixels:         {stats}",
    ]
    for key in ("timeStamp", "dataTimeStamp"):
        if _is_timestamp(value.get(key)):
            lines.append(f"  {key + ':':<15} {_timestamp_text(value[key])}")
    attributes = value.get("attribute") or []
    if attributes:
        lines.append(f"  attributes:     {len(attributes)}")
        for attr in attributes[:_LIST_ITEMS]:
            extra = ""
            if _is_timestamp(attr.get("timeStamp")) and attr["timeStamp"].get("secondsPastEpoch"):
                extra = f"  (at {_timestamp_text(attr['timeStamp'])})"
            lines.append(f"    {attr.get('name', '?')} = {_attribute_value(attr)}{extra}")
        if len(attributes) > _LIST_ITEMS:
            lines.append(f"    … {len(attributes) - _LIST_ITEMS} more")
    return lines


def format_value(channel: str, pv: Any) -> str:
    """The text ``pvhpc get`` prints for one value of ``channel``."""
    value = pv.get()
    if is_frame(value):
        return "\n".join([f"{channel}  (NTNDArray frame)", *frame_summary(pv, value)])
    return "\n".join([channel, *format_structure(value)])


def frame_line(pv: Any, value: dict) -> str:
    """One line per frame, for ``monitor``."""
    dims = "x".join(str(int(d.get("size", 0))) for d in value.get("dimension") or [])
    dtype, stats = _pixels(pv)
    return f"uniqueId {value.get('uniqueId')}  {dims} {dtype.split(',')[0]}  {stats}"


def open_channel(name: str, provider: str, timeout: float) -> Any:
    channel = pva.Channel(name, pva.CA if provider == "ca" else pva.PVA)
    channel.setTimeout(timeout)
    return channel


def fetch(channel: Any, name: str, request: str, timeout: float, ca: bool = False) -> Any:
    try:
        return channel.get(request)
    except pva.PvaException as exc:
        text = str(exc).strip()
        if "timed out" in text:
            raise NoAnswer(
                f"{name} did not answer within {timeout:g} s: check the name, and that its "
                f"server runs and can be reached ({search_settings(ca)})"
            ) from None
        if request and ("request" in text or "fields" in text):
            raise UsageError(f"-r/--request {request!r}: {text.splitlines()[0]}") from None
        raise NoAnswer(f"{name}: {text.splitlines()[0]}") from None


def send_command(channel_name: str, command: str, args: str, timeout: float) -> str:
    """Put ``{command, args}`` on a control channel and return the stage's answer.

    The answer is the first update whose ``objectTime`` differs from the current
    value's (the put itself changes only command/args). It is awaited on a monitor,
    not by polling gets: a stage told to ``stop`` answers and goes away at once, and
    its answer must still arrive. Raises :class:`NoAnswer` if none comes in ``timeout``,
    :class:`Refused` if the stage's access security refuses the put.
    """
    channel = open_channel(channel_name, "pva", timeout)
    current = fetch(channel, channel_name, "", timeout).get()
    if "command" not in current or "statusMessage" not in current:
        raise UsageError(f"{channel_name} is not a control channel (no command/statusMessage)")
    deadline = time.monotonic() + timeout
    answers: queue.SimpleQueue = queue.SimpleQueue()
    channel.monitor(
        lambda pv: answers.put((pv["objectTime"], pv["statusMessage"])),
        "field(objectTime,statusMessage)",
    )
    try:
        # The first update is the current value. Put only after it has arrived: a
        # put issued while the monitor is still connecting blocks in pvaccess
        # waiting for a callback that needs this thread's interpreter lock.
        try:
            asked_at, _ = answers.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            raise NoAnswer(
                f"{channel_name} did not send its current value within {timeout:g} s"
            ) from None
        try:
            channel.put(
                pva.PvObject(
                    {"command": pva.STRING, "args": pva.STRING}, {"command": command, "args": args}
                ),
                "field(command,args)",
            )
        except pva.PvaException as exc:
            if "not allowed" in str(exc):
                raise Refused(
                    f"{channel_name}: {command} refused by the stage's access security "
                    f"(the server said: {str(exc).strip()}); nothing was changed"
                ) from None
            raise NoAnswer(f"{channel_name}: the command was not accepted: {exc}") from None
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise NoAnswer(
                    f"{channel_name} took the command but did not answer within {timeout:g} s"
                )
            try:
                object_time, message = answers.get(timeout=min(0.1, remaining))
            except queue.Empty:
                if command == "stop" and not channel.isConnected():
                    return "Stopped (the control channel went away)"
                continue
            if object_time != asked_at:
                return message or "(empty statusMessage)"
    finally:
        channel.stopMonitor()
