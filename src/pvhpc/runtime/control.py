"""The commands of a stage's control channel (SPEC §4): configure, reset_stats,
get_stats, stop; anything else is answered and changes nothing."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["ControlCommands"]


class ControlCommands:
    """The control-command half of :class:`~pvhpc.runtime.stage.Stage`.

    Commands run in the control thread, one at a time; each returns the message
    published in the control record's ``statusMessage``. A ``configure`` whose
    runtime keys are not all valid changes nothing. Subclasses add runtime keys to
    ``RUNTIME_KEYS`` and apply them in ``configure_runtime``.
    """

    # Runtime keys of ``configure`` and the smallest value each accepts (None: any).
    RUNTIME_KEYS: dict[str, int | None] = {
        "receiverQueueSize": 0,
        "skipInitialUpdates": 0,
        "objectIdOffset": 1,
    }

    def runtime_values(self, config: dict) -> dict[str, int]:
        """Check every runtime key of a ``configure`` command before any is applied.

        Returns ``{key: int}`` for the keys present; raises ValueError naming the
        first bad one, so that a refused command changes nothing. Integers, whole
        numbers and their strings (``"25"``, as PvaPy users write them) are accepted.
        """
        values = {}
        for key, minimum in self.RUNTIME_KEYS.items():
            if key not in config:
                continue
            value = _whole_number(config[key])
            if value is None:
                raise ValueError(f"{key} must be an integer, got {config[key]!r}")
            if minimum is not None and value < minimum:
                raise ValueError(f"{key} must be >= {minimum}, got {value}")
            values[key] = value
        if "receiverQueueSize" in values and self.queue is None:
            raise ValueError(
                "receiverQueueSize: this stage runs without a receiver queue "
                "(start it with --receiver-queue-size >= 0)"
            )
        return values

    def configure_runtime(self, config: dict) -> list[str]:
        """Apply runtime keys checked by :meth:`runtime_values`; return what changed."""
        changed = []
        if "receiverQueueSize" in config:
            if self.queue is None:
                raise ValueError(
                    "receiverQueueSize: this stage runs without a receiver queue "
                    "(start it with --receiver-queue-size >= 0)"
                )
            self.queue.resize(int(config["receiverQueueSize"]))
            changed.append(f"receiverQueueSize={self.queue.max_length}")
        return changed

    def handle_command(self, command: str, args: str) -> str:
        """Run one control command (control thread); return the status message."""
        command = (command or "").strip()
        if command == "stop":
            self.request_stop("stop command on the control channel")
            return "Stopping"
        if command == "restart":
            if self.progress_sink is None:
                return (
                    "restart: this stage has no supervising parent to start it again "
                    "(run it with --restart-failed or -nc > 1); nothing changed"
                )
            self.restart_requested = True
            self.request_stop("restart command on the control channel")
            return "Restarting: draining, then the parent starts it again"
        if command == "reset_stats":
            self.reset_stats()
            self.server.publish_status(self.stats())
            return "Statistics reset"
        if command == "get_stats":
            self.server.publish_status(self.stats())
            return "Statistics published on the status channel"
        if command == "configure":
            try:
                config = json.loads(args) if args and args.strip() else None
            except json.JSONDecodeError as exc:
                return f"configure: args is not valid JSON ({exc.msg}); nothing changed"
            if not isinstance(config, dict):
                return 'configure: args must be a JSON object such as {"x": 100}; nothing changed'
            try:
                changed = self.configure_runtime(self.runtime_values(config))
            except (ValueError, TypeError) as exc:
                return f"configure: {exc}; nothing changed"
            try:
                self.processor.configure(config)
            except Exception as exc:  # noqa: BLE001 - user code
                self.logger.error("processor configure(%s) failed: %s", config, exc)
                applied = f" (applied before it: {', '.join(changed)})" if changed else ""
                return (
                    f"configure: processor rejected {config}: {type(exc).__name__}: {exc}{applied}"
                )
            done = ", ".join(changed)
            return f"Configured: {json.dumps(config)}" + (f" ({done})" if done else "")
        known = "configure, reset_stats, get_stats, stop, restart"
        if not command:
            return f"No command given; known commands: {known}. Nothing changed"
        return f"Unknown command {command!r}; known commands: {known}. Nothing changed"


def _whole_number(value: Any) -> int | None:
    """``value`` as an int if it is a whole number (or its string), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None
