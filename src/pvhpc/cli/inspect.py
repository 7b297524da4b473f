"""``pvhpc get``, ``pvhpc monitor`` and ``pvhpc control``: look at and steer channels.

``get`` and ``monitor`` print a channel's value readably: an area-detector frame
(NTNDArray) as its id, dimensions, type, pixel statistics, timestamps and
attributes rather than its pixels; any other structure as indented fields, with
long arrays shortened. ``control`` writes a command to a stage's control channel
and prints the stage's answer (its ``statusMessage``).

Exit status: 0 done; 1 the channel did not answer in time; 2 a usage mistake.
``main`` takes the whole argument list with the subcommand first
(``["get", "pvapy:image"]``), as the ``pvhpc`` dispatcher passes it. From
Python, use :mod:`pvhpc.client`.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

import pvaccess as pva

from ..client import (
    COMMANDS,
    NoAnswer,
    fetch,
    format_structure,
    format_value,
    frame_line,
    frame_summary,
    is_frame,
    open_channel,
    send_command,
)
from ..errors import UsageError
from ..loopback import search_settings
from ..options.common import Parser, add_version
from .common import entry_point, run_main

__all__ = ["main"]


def _parser(command: str, description: str) -> Parser:
    p = Parser(prog=f"pvhpc {command}", description=description, allow_abbrev=False)
    add_version(p)
    return p


def _get(argv: Sequence[str]) -> int:
    p = _parser("get", "Print a channel's current value (frames as a summary, not pixels).")
    p.add_argument("channel")
    p.add_argument("-r", "--request", default="", help="pvRequest, e.g. 'field(uniqueId)'")
    p.add_argument("-p", "--provider", choices=("pva", "ca"), default="pva", help="[pva]")
    p.add_argument("-t", "--timeout", type=float, default=5.0, help="seconds to wait [5]")
    args = p.parse_args(argv)
    if args.timeout <= 0:
        raise UsageError(f"--timeout must be > 0, got {args.timeout}")
    channel = open_channel(args.channel, args.provider, args.timeout)
    pv = fetch(channel, args.channel, args.request, args.timeout, args.provider == "ca")
    sys.stdout.write(format_value(args.channel, pv) + "\n")
    return 0


def _monitor(argv: Sequence[str]) -> int:
    p = _parser(
        "monitor",
        "Print a channel's updates as they arrive: one line per frame, "
        "indented fields for other structures.",
    )
    p.add_argument("channel")
    p.add_argument("-n", "--count", type=int, default=0, help="exit after N updates")
    p.add_argument("-t", "--time", type=float, default=0.0, help="exit after this many seconds")
    p.add_argument("-r", "--request", default="", help="pvRequest, e.g. 'field(uniqueId)'")
    p.add_argument("-p", "--provider", choices=("pva", "ca"), default="pva", help="[pva]")
    p.add_argument("--full", action="store_true", help="print frames in full (as get does)")
    args = p.parse_args(argv)
    if args.count < 0:
        raise UsageError(f"--count must be >= 0, got {args.count}")
    if args.time < 0:
        raise UsageError(f"--time must be >= 0, got {args.time}")
    channel = open_channel(args.channel, args.provider, 5.0)
    done = threading.Event()
    lock = threading.Lock()
    seen = [0]
    failures: list[str] = []

    def on_update(pv: Any) -> None:
        with lock:
            if done.is_set():
                return
            seen[0] += 1
            stamp = time.strftime("%H:%M:%S") + f".{int(time.time() * 1000) % 1000:03d}"
            try:
                value = pv.get()
                if is_frame(value) and not args.full:
                    text = f"{stamp}  {args.channel}  {frame_line(pv, value)}"
                elif is_frame(value):
                    text = "\n".join([f"{stamp}  {args.channel}", *frame_summary(pv, value)])
                else:
                    text = "\n".join([f"{stamp}  {args.channel}", *format_structure(value)])
                sys.stdout.write(text + "\n")
                sys.stdout.flush()
            except Exception as exc:  # noqa: BLE001 - e.g. stdout closed by `| head`
                failures.append(str(exc))
                done.set()
            if args.count and seen[0] >= args.count:
                done.set()

    try:
        channel.monitor(on_update, args.request or "field()")
    except pva.PvaException as exc:
        raise UsageError(f"-r/--request {args.request!r}: {str(exc).splitlines()[0]}") from None
    start = time.monotonic()
    end = start + args.time if args.time > 0 else None
    warned = False
    try:
        while not done.is_set():
            now = time.monotonic()
            if end is not None and now >= end:
                break
            if not warned and seen[0] == 0 and now - start > 5 and not channel.isConnected():
                warned = True
                sys.stderr.write(
                    f"pvhpc monitor: still waiting for {args.channel} to connect "
                    f"({search_settings(args.provider == 'ca')})\n"
                )
            done.wait(0.2 if end is None else max(0.0, min(0.2, end - now)))
    except KeyboardInterrupt:
        pass
    finally:
        done.set()
        try:
            channel.stopMonitor()
        except pva.PvaException:
            pass
    if seen[0] == 0 and end is not None:
        if channel.isConnected():
            raise NoAnswer(f"no update from {args.channel} within {args.time:g} s")
        raise NoAnswer(
            f"no update from {args.channel} within {args.time:g} s: no server answered; "
            f"check the name, and that its server runs and can be reached "
            f"({search_settings(args.provider == 'ca')})"
        )
    return 0


def _control(argv: Sequence[str]) -> int:
    p = _parser(
        "control",
        "Send a command to a stage's control channel, wait for its answer "
        "(statusMessage) and print it.",
    )
    p.add_argument("channel", help="control channel, e.g. consumer:1:control")
    p.add_argument("command", choices=COMMANDS, help=" | ".join(COMMANDS))
    p.add_argument(
        "args", nargs="?", default="", help="configure: a JSON object, e.g. '{\"x\": 100}'"
    )
    p.add_argument("-t", "--timeout", type=float, default=5.0, help="seconds to wait [5]")
    args = p.parse_args(argv)
    if args.timeout <= 0:
        raise UsageError(f"--timeout must be > 0, got {args.timeout}")
    if args.command == "configure":
        if not args.args:
            raise UsageError("configure needs a JSON object, e.g. '{\"x\": 100}'")
        try:
            config = json.loads(args.args)
        except json.JSONDecodeError as exc:
            raise UsageError(f"configure: invalid JSON {args.args!r}: {exc.msg}") from None
        if not isinstance(config, dict):
            raise UsageError(f"configure: expected a JSON object, got {args.args!r}")
    elif args.args:
        raise UsageError(f"{args.command} takes no arguments, got {args.args!r}")
    message = send_command(args.channel, args.command, args.args, args.timeout)
    sys.stdout.write(message + "\n")
    return 0


_HANDLERS = {"get": _get, "monitor": _monitor, "control": _control}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; ``argv[0]`` is the subcommand (``get``, ``monitor`` or ``control``)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in _HANDLERS:
        sys.stderr.write("usage: pvhpc get|monitor|control ...\n")
        return 2
    name, rest = args[0], args[1:]

    def body(argv: Sequence[str] | None) -> int:
        try:
            return _HANDLERS[name](list(argv or []))
        except NoAnswer as exc:
            sys.stderr.write(f"pvhpc {name}: error: {exc}\n")
            return 1

    return run_main(f"pvhpc {name}", body, rest)


if __name__ == "__main__":
    entry_point(main)()
