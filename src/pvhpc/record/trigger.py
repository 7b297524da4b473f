"""A metadata condition that dumps the flight recorder: ``--trigger 'pva://shutter<0.5'``."""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..endpoints import Endpoint, parse_endpoint
from ..errors import UsageError

__all__ = ["Trigger", "parse_trigger"]

_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    ">": operator.gt,
}
_PATTERN = re.compile(r"^(?P<channel>[^<>=!]+?)\s*(?P<op><=|>=|==|!=|<|>)\s*(?P<value>[^<>=!]+)$")


@dataclass
class Trigger:
    """``channel OP threshold``; fires when a value makes it true after one that did
    not (an edge: a condition already true at the first value does not fire)."""

    endpoint: Endpoint
    op: str
    threshold: float
    text: str
    _was_true: bool | None = None

    def update(self, value: Any) -> bool:
        """Feed one value of the channel; True if the condition has just become true.
        A value that is no number makes the condition false."""
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        now = not math.isnan(number) and _OPERATORS[self.op](number, self.threshold)
        fired = now and self._was_true is False
        self._was_true = now
        return fired


def parse_trigger(text: str, option: str = "--trigger") -> Trigger:
    """Parse ``[pva://|ca://]NAME OP NUMBER`` (OP one of < <= > >= == !=; no prefix:
    CA, as for metadata channels); UsageError naming ``option`` otherwise."""
    match = _PATTERN.match(text.strip())
    if match is None:
        raise UsageError(
            f"{option}: {text!r} is not CHANNEL OP NUMBER (e.g. 'pva://shutter<0.5'; "
            f"OP one of {' '.join(sorted(_OPERATORS))})"
        )
    try:
        threshold = float(match["value"])
    except ValueError:
        raise UsageError(
            f"{option}: {match['value'].strip()!r} in {text!r} is not a number"
        ) from None
    if math.isnan(threshold):
        raise UsageError(f"{option}: {text!r} compares with NaN, which is never true")
    endpoint = parse_endpoint(match["channel"], option, default_protocol="ca")
    return Trigger(endpoint, match["op"], threshold, text.strip())
