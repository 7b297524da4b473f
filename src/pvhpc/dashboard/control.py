"""The dashboard's control actions: a command to one stage, or stop everything.

Each action goes to the stage's control channel through
:func:`pvhpc.client.send_command` (what ``pvhpc control`` does), and its answer is
the stage's ``statusMessage``. A put that the stage's access security refuses is
answered as refused, logged, and changes nothing. Every call blocks until the
stage answers (or ``timeout``): the web server runs them in worker threads.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from ..client import COMMANDS, NoAnswer, Refused, send_command
from ..errors import UsageError

__all__ = ["Controller", "ACTIONS"]

logger = logging.getLogger("pvhpc.dashboard")

#: The commands a page may send: those of ``pvhpc control``.
ACTIONS = COMMANDS


class Controller:
    """Sends the page's commands for a source (:mod:`pvhpc.dashboard.sources`)."""

    def __init__(self, source: Any, timeout: float = 5.0):
        self.source = source
        self.timeout = timeout

    def command(self, key: str, command: str, args: str = "", who: str = "") -> dict:
        """Run ``command`` on the stage ``key``; returns ``{ok, message, ...}``."""
        if command not in ACTIONS:
            return _answer(False, key, f"unknown command {command!r} (use {', '.join(ACTIONS)})")
        channel = self.source.control_channel(key)
        if channel is None:
            return _answer(False, key, f"{key} has no control channel")
        if command == "configure":
            try:
                config = json.loads(args or "")
            except ValueError as exc:
                return _answer(False, key, f"configure: not JSON ({exc}); nothing sent")
            if not isinstance(config, dict):
                return _answer(False, key, "configure: expected a JSON object; nothing sent")
            args = json.dumps(config)
        else:
            args = ""
        return self._send(key, channel, command, args, who)

    def _send(self, key: str, channel: str, command: str, args: str, who: str) -> dict:
        try:
            message = send_command(channel, command, args, self.timeout)
        except Refused as exc:
            logger.warning("%s: %s (asked from %s)", key, exc, who or "?")
            return _answer(False, key, str(exc), channel, refused=True)
        except (NoAnswer, UsageError) as exc:
            logger.warning("%s: %s %s failed: %s", key, command, channel, exc)
            return _answer(False, key, str(exc), channel)
        logger.info("%s: %s %s -> %s (asked from %s)", key, command, args, message, who or "?")
        return _answer(True, key, message, channel)

    def stop_all(self, who: str = "") -> dict:
        """Stop the whole workflow. Run here (``pvhpc run --web``): the runner stops it
        as Ctrl-C does, upstream first, each stage draining. Attached: ``stop`` to
        every stage's control channel, upstream first, each answer collected."""
        runner = self.source.runner
        if runner is not None:
            if runner.stop_reason:
                return _answer(True, "", f"already stopping ({runner.stop_reason})")
            runner.request_stop("stop from the dashboard")
            logger.info("workflow stop asked from %s", who or "?")
            return _answer(
                True, "", "Stopping the workflow: stages stop upstream first, each draining"
            )
        answers = [self._send(key, ch, "stop", "", who) for key, ch in self.source.stop_targets()]
        if not answers:
            return _answer(False, "", "no stage with a control channel is known")
        ok = all(a["ok"] for a in answers)
        text = "; ".join(f"{a['key']}: {a['message']}" for a in answers)
        return {**_answer(ok, "", text), "answers": answers}


def _answer(ok: bool, key: str, message: str, channel: str = "", refused: bool = False) -> dict:
    return {"ok": ok, "key": key, "message": message, "channel": channel, "refused": refused}
