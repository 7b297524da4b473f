"""Channels and the protocol they are reached with, and lists of them (``pva://x,ca://y,z``).

One parser for every option that lists channels: the consumer's and collector's
``--metadata-channels``, the simulator's ``--metadata-pv`` and a workflow file's
``external`` list. Without a ``pva://``/``ca://`` prefix a name takes the option's
default protocol (CA for metadata, as PvaPy's commands do; PVA in workflow files).
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import UsageError

__all__ = ["Endpoint", "PROTOCOLS", "parse_channel_list", "parse_endpoint"]

PROTOCOLS = ("pva", "ca")


@dataclass(frozen=True)
class Endpoint:
    """A channel name and its protocol, ``pva`` or ``ca``. Printed as it is written:
    ``name`` for PVA, ``ca://name`` for CA."""

    name: str
    protocol: str = "pva"

    def __str__(self) -> str:
        return self.name if self.protocol == "pva" else f"ca://{self.name}"


def parse_endpoint(text: str, option: str, default_protocol: str = "pva") -> Endpoint:
    """``pva://x``, ``ca://x`` or ``x`` (``default_protocol``); UsageError naming ``option``."""
    item = text.strip()
    protocol = default_protocol
    name = item
    if "://" in item:
        protocol, _, name = item.partition("://")
        protocol = protocol.strip().lower()
    if protocol not in PROTOCOLS:
        raise UsageError(
            f"{option}: {item!r} has unknown protocol {protocol!r} (use pva:// or ca://)"
        )
    if not name or any(c.isspace() for c in name):
        raise UsageError(f"{option}: {item!r} is not pva://NAME, ca://NAME or NAME")
    return Endpoint(name, protocol)


def parse_channel_list(
    text: str | None, option: str, default_protocol: str = "ca"
) -> list[Endpoint]:
    """Parse a comma-separated channel list; an empty or missing text is no channel.

    Raises :class:`UsageError` naming ``option`` for an unknown protocol, an empty or
    blank name, or a channel given twice.
    """
    if text is None or not text.strip():
        return []
    result: list[Endpoint] = []
    for item in text.split(","):
        endpoint = parse_endpoint(item, option, default_protocol)
        if any(e.name == endpoint.name for e in result):
            raise UsageError(f"{option}: channel {endpoint.name!r} is given twice")
        result.append(endpoint)
    return result
