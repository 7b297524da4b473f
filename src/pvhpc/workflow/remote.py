"""A stage on another host: the wrapper that runs it there, and its process here.

``pvhpc run``'s ssh and Slurm launchers start each stage on its host as
``pvhpc remote-stage [--cwd DIR] [--env NAME=VALUE]… -- <type> <options>`` through
``ssh`` or ``srun``, whose standard streams join the two ends:

- the stage's stdout (its JSON reports) and stderr come back unchanged; after the
  stage has exited the wrapper writes one last stderr line, ``pvhpc remote-stage:
  exit status N``, so that this side can tell a stage that ended from a connection
  that was lost (ssh or srun ending without that line);
- the wrapper's stdin carries the stop sequence, one word a line: ``INT`` and
  ``TERM`` are sent to the stage as those signals, ``KILL`` kills its process
  group. The end of stdin (ssh or srun died, the connection to the host was lost)
  stops the stage by itself: SIGINT, then SIGTERM, then SIGKILL, as a local stop.
  Signals the wrapper gets (srun cancelling a step, SIGHUP) go to the stage too, and
  the stage is ended if the wrapper dies (Linux: parent-death signal).

:func:`run_remote_stage` is the host side; :class:`RemoteStageProcess` is this side,
a :class:`~pvhpc.workflow.process.StageProcess` whose stderr lines are written to
``<stage>.err`` prefixed with the stage and its host.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
from typing import IO

from .model import StageSpec
from .process import StageProcess, stop_process

__all__ = ["EXIT_MARKER", "run_remote_stage", "RemoteStageProcess"]

EXIT_MARKER = "pvhpc remote-stage: exit status "
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the stage's process, before it runs: SIGTERM when the wrapper dies (Linux)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: stdin's end still stops the stage
        pass


def _pump(source: IO[bytes], sink: IO[bytes]) -> None:
    """Copy ``source`` to ``sink`` until EOF; once ``sink`` is gone (the connection
    was lost), go on reading so that the stage never blocks on a full pipe."""
    fd = source.fileno()
    alive = True
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            return
        if alive:
            try:
                sink.write(chunk)
                sink.flush()
            except (OSError, ValueError):
                alive = False


def run_remote_stage(
    stage_argv: list[str], cwd: str | None, env: dict[str, str], grace: float = 10.0
) -> int:
    """Run ``python -m pvhpc <stage_argv>`` here, controlled through stdin (see the
    module docs); returns its exit status (128 + N if it died of signal N).

    Main thread; blocks until the stage has exited and its output was passed on.
    """
    if cwd:
        try:
            os.chdir(cwd)
        except OSError as exc:
            sys.stderr.write(
                f"pvhpc remote-stage: warning: cannot change to {cwd} ({exc.strerror}); "
                f"running in {os.getcwd()}\n"
            )
    popen = subprocess.Popen(
        [sys.executable, "-m", "pvhpc", *stage_argv],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(os.environ, **env, PYTHONUNBUFFERED="1"),
        start_new_session=True,  # its process group can be killed as a whole
        preexec_fn=_die_with_parent,
    )
    stopping = threading.Lock()

    def stop_sequence() -> None:
        if stopping.acquire(blocking=False):
            stop_process(popen, grace)

    def send(sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            if sig == signal.SIGKILL:
                os.killpg(popen.pid, sig)
            elif popen.poll() is None:
                popen.send_signal(sig)

    def control() -> None:
        for line in sys.stdin:
            word = line.strip().upper()
            if word in ("INT", "TERM", "KILL"):
                send(getattr(signal, "SIG" + word))
        stop_sequence()  # stdin ended: nobody can stop us any more

    signal.signal(signal.SIGINT, lambda *_: send(signal.SIGINT))
    signal.signal(signal.SIGTERM, lambda *_: send(signal.SIGTERM))
    signal.signal(
        signal.SIGHUP, lambda *_: threading.Thread(target=stop_sequence, daemon=True).start()
    )
    pumps = [
        threading.Thread(target=_pump, args=(popen.stdout, sys.stdout.buffer), daemon=True),
        threading.Thread(target=_pump, args=(popen.stderr, sys.stderr.buffer), daemon=True),
    ]
    for thread in pumps:
        thread.start()
    threading.Thread(target=control, daemon=True).start()
    code = popen.wait()
    for thread in pumps:
        thread.join(10.0)
    status = 128 - code if code < 0 else code
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(f"{EXIT_MARKER}{status}\n")
        sys.stderr.flush()
    return status


class RemoteStageProcess(StageProcess):
    """A stage started on its host by ``argv`` (``ssh …`` or ``srun …`` running
    :func:`run_remote_stage` there). Main thread, but for the stderr reader thread.

    ``via`` names the connection in messages (``ssh connection to node1``);
    ``stop`` sends the stop sequence over the connection, then ends the connection
    itself if the stage would not go.
    """

    def __init__(
        self, stage: StageSpec, log_dir: str, env: dict, argv: list[str], via: str, tool: str
    ):
        super().__init__(stage, log_dir, env)
        self.argv = argv
        self.via = via
        self.tool = tool
        self.remote_status: int | None = None
        self._reader: threading.Thread | None = None

    def start(self) -> None:
        with open(self.out_path, "wb") as out:
            self.popen = subprocess.Popen(
                self.argv,
                stdout=out,
                stderr=subprocess.PIPE,
                stdin=subprocess.PIPE,
                env=self.env,
                start_new_session=True,
            )
        err = open(self.err_path, "wb")  # noqa: SIM115 - closed by the reader thread
        self._reader = threading.Thread(target=self._read_stderr, args=(err,), daemon=True)
        self._reader.start()

    def _read_stderr(self, err: IO[bytes]) -> None:
        assert self.popen is not None and self.popen.stderr is not None
        prefix = f"[{self.stage.label}] ".encode()
        with err:
            for line in self.popen.stderr:
                text = line.decode(errors="replace")
                if text.startswith(EXIT_MARKER):
                    with contextlib.suppress(ValueError):
                        self.remote_status = int(text[len(EXIT_MARKER) :].strip())
                    continue
                err.write(prefix + line)
                err.flush()

    @property
    def lost(self) -> bool:
        """True once the connection ended without the stage's exit status."""
        if self.popen is None or self.popen.poll() is None:
            return False
        if self._reader is not None:
            self._reader.join(5.0)
        return self.remote_status is None

    def failure(self) -> str:
        code = self.returncode
        if self.lost:
            try:
                heard = os.path.getsize(self.out_path) > 0
            except OSError:
                heard = False
            how = "lost" if heard else "failed"
            return f"{self.via} {how} ({self.tool} exit status {code})"
        return super().failure()

    def _send(self, word: str) -> None:
        assert self.popen is not None and self.popen.stdin is not None
        try:
            self.popen.stdin.write(f"{word}\n".encode())
            self.popen.stdin.flush()
        except (OSError, ValueError):  # the connection is gone already
            pass

    def stop(self, grace: float) -> int | None:
        """INT, TERM and KILL over the connection (``grace``, 5 and 5 s to exit), then
        SIGTERM and SIGKILL to ``ssh``/``srun`` itself. Blocks; the exit status."""
        popen = self.popen
        if popen is None:
            return None
        self.stopped_by_us = True
        for word, wait in (("INT", grace), ("TERM", 5.0), ("KILL", 5.0)):
            if popen.poll() is not None:
                break
            self._send(word)
            with contextlib.suppress(subprocess.TimeoutExpired):
                popen.wait(wait)
        if popen.poll() is None:
            stop_process(popen, 0.0)  # SIGINT, SIGTERM, SIGKILL to the local end
        return popen.poll()
