"""p4p, an independent PVA implementation (PVXS: no distributor plugin), as a test peer.

p4p and pvaccess each bring their own EPICS libraries, so p4p runs in a process of
its own: this file is that process's program, and :class:`P4pSource` and
:func:`p4p_put` start it from a test.

``python p4p_peer.py serve NAME`` serves an NTNDArray (uniqueId 0) on NAME, prints
``serving`` once up, and for each line ``post FIRST LAST`` on stdin posts frames
with those uniqueIds, then prints ``posted LAST``; it ends at EOF.
``python p4p_peer.py put NAME JSON`` makes one put of the JSON object with
``wait=True`` (a request with ``process=passive``) and prints ``put done``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

_HERE = os.path.abspath(__file__)


class P4pSource:
    """An NTNDArray channel served by p4p in a child process (start with ``with``)."""

    def __init__(self, channel: str, timeout: float = 20):
        self.channel = channel
        self.timeout = timeout
        self.popen = subprocess.Popen(
            [sys.executable, _HERE, "serve", channel],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,  # PVXS says it fell back from port 5075
            text=True,
        )
        self._expect("serving")

    def _expect(self, line: str) -> None:
        # readline() blocks: the child answers each request at once, or has died (EOF).
        got = self.popen.stdout.readline().strip()  # type: ignore[union-attr]
        if got != line:
            raise AssertionError(f"p4p peer said {got!r} (exit {self.popen.poll()}), not {line!r}")

    def post(self, first: int, last: int) -> None:
        """Post frames with uniqueIds ``first..last``; returns once they are posted."""
        self.popen.stdin.write(f"post {first} {last}\n")  # type: ignore[union-attr]
        self.popen.stdin.flush()  # type: ignore[union-attr]
        self._expect(f"posted {last}")

    def close(self) -> None:
        if self.popen.poll() is None:
            self.popen.stdin.close()  # type: ignore[union-attr]
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)

    def __enter__(self) -> P4pSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def p4p_put(channel: str, values: dict, timeout: float = 20) -> None:
    """One p4p put of ``values`` on ``channel`` with ``wait=True``; fails if it fails."""
    done = subprocess.run(
        [sys.executable, _HERE, "put", channel, json.dumps(values)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0 and "put done" in done.stdout, (done.stdout, done.stderr)


def _serve(name: str) -> None:
    import numpy as np
    from p4p.nt import NTNDArray
    from p4p.server import Server
    from p4p.server.thread import SharedPV

    nt = NTNDArray()
    pv = SharedPV(initial=nt.wrap(np.zeros((4, 4), np.uint16)))
    with Server(providers=[{name: pv}]):
        print("serving", flush=True)
        for line in sys.stdin:
            words = line.split()
            if words[:1] == ["post"]:
                first, last = int(words[1]), int(words[2])
                for i in range(first, last + 1):
                    value = nt.wrap(np.full((4, 4), i, np.uint16))
                    value["uniqueId"] = i
                    pv.post(value)
                print("posted", last, flush=True)


def _put(name: str, values: str) -> None:
    from p4p.client.thread import Context

    with Context("pva") as ctx:
        ctx.put(name, json.loads(values), wait=True, timeout=10)
    print("put done", flush=True)


if __name__ == "__main__":
    {"serve": _serve, "put": _put}[sys.argv[1]](*sys.argv[2:])
