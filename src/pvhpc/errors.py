"""Exceptions that the command-line tools turn into one clear line and exit status 2."""

from __future__ import annotations

__all__ = ["UsageError", "ProcessorError", "distributor_refused", "server_answer"]


class UsageError(Exception):
    """A user mistake: bad option value, missing file, unknown class, bad channel map.

    The message names the option and the bad value; the CLI prints it as one line
    on stderr and exits with status 2.
    """


class ProcessorError(Exception):
    """The user's processor failed where the stage cannot go on (in ``start()``).

    The message is complete (it names the method and the processor's exception):
    the runtime prints it as it is, on one line, and exits non-zero.
    """


def server_answer(text: str) -> str:
    """The server's words in a pvaccess exception (after the client's own prefix)."""
    text = " ".join(text.split())
    marker = "connect "
    return text.split(marker, 1)[1] if marker in text else text


def distributor_refused(channel: str, plugin: str | None, answer: str) -> str:
    """The one line for a source whose server lacks the distributor plugin."""
    return (
        f"the server of {channel} has no distributor plugin {plugin!r}, which the "
        f"distributor options (--distributor-updates/-set/-group/-trigger) need: it "
        f"refused the request ({answer}). Serve the channel through pvapy-mirror-server, "
        f'which has the distributor (pvapy-mirror-server --channel-map "({channel}:dist,'
        f'{channel},pva,1000)"), and read {channel}:dist; or leave out the distributor options'
    )
