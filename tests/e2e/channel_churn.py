"""Channels that come and go, and receivers that chase them (``python -m channel_churn``).

``churn PREFIX N SECONDS``: a PVA server that adds and removes the records
PREFIX:0 … PREFIX:N-1 at random every 1–20 ms, for SECONDS.
``receive PREFIX N SECONDS``: N pvhpc receivers on those channels, probing for a
fresh channel every 10 ms while unconnected, for SECONDS; prints one JSON line of
counts and ends with status 0 (a crash ends it with a signal).
"""

from __future__ import annotations

import json
import random
import sys
import time

import pvaccess as pva

from pvhpc import receiver
from pvhpc.counting import IdTracker
from pvhpc.runtime.launcher import exit_process


def churn(prefix: str, n: int, seconds: float) -> None:
    server = pva.PvaServer()
    names = [f"{prefix}:{i}" for i in range(n)]
    up: set[str] = set()
    rng = random.Random(1)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        name = rng.choice(names)
        if name in up:
            server.removeRecord(name)
            up.discard(name)
        else:
            server.addRecord(name, pva.PvObject({"value": pva.INT}, {"value": 1}))
            up.add(name)
        time.sleep(rng.uniform(0.001, 0.02))


def receive(prefix: str, n: int, seconds: float) -> None:
    receiver.PROBE_FIRST = receiver.PROBE_MAX = 0.01
    receivers = [
        receiver.Receiver(
            f"{prefix}:{i}", "field(value)", lambda pv, oid: None, IdTracker(1), oid_field="value"
        )
        for i in range(n)
    ]
    for r in receivers:
        r.start()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for r in receivers:
            r.supervise()
        time.sleep(0.002)
    counts = {
        "connects": sum(r.n_connects for r in receivers),
        "channels": sum(r._generation for r in receivers),
    }
    print(json.dumps(counts), flush=True)
    exit_process(0)


if __name__ == "__main__":
    mode, prefix, n, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    (churn if mode == "churn" else receive)(prefix, n, seconds)
