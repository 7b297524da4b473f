"""Who may do what on the dashboard: where it listens, the control token, read-only.

The page and its live numbers are open to whoever can reach the address (the
default, 127.0.0.1, is this host only). Control actions (configure, reset_stats,
stop) need the token: one made at start and printed, or the first line of
``--token-file``. With ``--read-only`` there are no control actions at all.
"""

from __future__ import annotations

import hmac
import os
import re
import secrets
from dataclasses import dataclass

from ..errors import UsageError

__all__ = ["DEFAULT_HOST", "Access", "parse_listen", "load_token", "TOKEN_HEADER"]

DEFAULT_HOST = "127.0.0.1"
#: The request header that carries the token (the page sends it with each action).
TOKEN_HEADER = "X-Pvhpc-Token"

_LISTEN = re.compile(r"^(?:(?P<host>\[[0-9A-Fa-f:.]+\]|[^:\[\]\s]+):)?(?P<port>\d+)$")


def parse_listen(text: str, option: str = "--web") -> tuple[str, int]:
    """``PORT``, ``HOST:PORT`` or ``[IPv6]:PORT`` as ``(host, port)``; the host is
    127.0.0.1 unless given; port 0 picks a free one. UsageError naming ``option``."""
    m = _LISTEN.match(text.strip())
    if not m:
        raise UsageError(f"{option}: {text!r} is not [HOST:]PORT (e.g. 8080 or 0.0.0.0:8080)")
    port = int(m.group("port"))
    if port > 65535:
        raise UsageError(f"{option}: port {port} is not in 0..65535")
    host = m.group("host") or DEFAULT_HOST
    return host.strip("[]"), port


def load_token(path: str, option: str = "--token-file") -> str:
    """The token in the first line of ``path``; UsageError if missing or empty."""
    if not os.path.isfile(path):
        raise UsageError(f"{option}: {path} is not a file")
    try:
        with open(path) as f:
            token = f.readline().strip()
    except OSError as exc:
        raise UsageError(f"{option}: cannot read {path}: {exc.strerror}") from None
    if len(token) < 8:
        raise UsageError(f"{option}: {path} must hold a token of at least 8 characters")
    return token


@dataclass
class Access:
    """The control policy of one dashboard. ``token`` is None only when read-only."""

    token: str | None
    read_only: bool = False
    #: Where the token came from, for the start line ("" : made at start).
    token_file: str = ""

    @classmethod
    def make(cls, token_file: str | None, read_only: bool) -> Access:
        if read_only:
            return cls(None, True)
        if token_file:
            return cls(load_token(token_file), False, token_file)
        return cls(secrets.token_urlsafe(18), False)

    def refusal(self, given: str | None) -> str | None:
        """Why a control action with token ``given`` is refused, or None if allowed."""
        if self.read_only or self.token is None:
            return "refused: this dashboard is read-only (--read-only)"
        if not given:
            return "refused: a control action needs the dashboard's token"
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            return "refused: wrong token"
        return None
