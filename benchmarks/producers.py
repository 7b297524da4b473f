"""Several producers in one process: the source of the collector benchmark.

Serves ``--n-producers`` channels (``--channel-prefix`` + ``1``, ``2``, …) and
publishes one stream of NTNDArray frames over them round robin, at ``--frame-rate``
frames per second in total: frame ``i`` (``uniqueId`` ``i``, counting from 1) goes
to producer ``(i-1) % n + 1``, exactly what a collector sees behind ``n`` consumers
sharing a distributor. Paced on absolute deadlines. Each channel starts holding a
frame with ``uniqueId`` 0 (skipped by the collector's ``--skip-initial-updates 1``).

After ``--start-delay`` seconds it publishes for ``--runtime`` seconds, prints
``sent N frames in T s`` and keeps the channels up for ``--shutdown-delay`` seconds
(SIGINT/SIGTERM end that wait, or the run, at once).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time

import numpy as np
import pvaccess as pva

from pvhpc.processors.ad_image import make_frame


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--channel-prefix", required=True)
    p.add_argument("-np", "--n-producers", type=int, default=4)
    p.add_argument("-nx", type=int, default=128)
    p.add_argument("-ny", type=int, default=128)
    p.add_argument("-fps", "--frame-rate", type=float, default=1000.0)
    p.add_argument("-rt", "--runtime", type=float, default=5.0)
    p.add_argument("-std", "--start-delay", type=float, default=2.0)
    p.add_argument("-shd", "--shutdown-delay", type=float, default=10.0)
    args = p.parse_args(argv)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    rng = np.random.default_rng(1)
    names = [f"{args.channel_prefix}{i + 1}" for i in range(args.n_producers)]
    frames = [
        make_frame(rng.integers(0, 256, (args.ny, args.nx), dtype=np.uint8), 0) for _ in names
    ]
    server = pva.PvaServer()
    for name, frame in zip(names, frames):
        # A copy: a record made from the object we keep changing would post every
        # field we set as an update of its own.
        server.addRecord(name, frame.copy())
    print(f"serving {len(names)} producers {names[0]}..{names[-1]}", flush=True)
    if stop.wait(args.start_delay):
        return 0
    update = server.update
    period = 1.0 / args.frame_rate
    n_total = int(round(args.runtime * args.frame_rate))
    n = len(names)
    clock = time.perf_counter
    time_ns = time.time_ns
    start = clock()
    sent = 0
    while sent < n_total and not stop.is_set():
        deadline = start + sent * period
        now = clock()
        if now < deadline:
            time.sleep(deadline - now)
        sent += 1
        k = (sent - 1) % n
        seconds, nanos = divmod(time_ns(), 1_000_000_000)
        stamp = {"secondsPastEpoch": seconds, "nanoseconds": nanos}
        frame = frames[k]
        frame.set({"uniqueId": sent, "timeStamp": stamp, "dataTimeStamp": stamp})
        update(names[k], frame)
    elapsed = max(clock(), start + sent * period) - start
    print(f"sent {sent} frames in {elapsed:.3f} s, {sent / elapsed:.2f} fps", flush=True)
    stop.wait(args.shutdown_delay)
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
