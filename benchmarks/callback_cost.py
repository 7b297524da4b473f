"""What our consumer adds per frame to a bare pvaccess callback, timed in one process.

    python benchmarks/callback_cost.py [--size 128] [--frames 100000] [--repeats 5] [-oc]

The out-of-process figures of ``run.py``'s ``cpu`` benchmark put ours and the floors
10-30% apart, with a run-to-run spread on this machine of the same order. This
measures only the part that differs, without the transport and without that noise:
the same NTNDArray (as our simulator serves it) is handed ``--frames`` times, its
``uniqueId`` one higher each time, to a floor's callback and to our consumer's monitor
callback (``Receiver._on_update``: pinning, id, counting, the passthrough processor,
latency sampling at the rate of a 3 kHz stream), alternating, each repeat; thread CPU
time over the calls, less a loop that only sets the id. Without ``-oc`` the floor is
``floor.py --ids``'s callback (read the id, count the gaps); with ``-oc`` (ours with an
output channel) it is ``floor_republish.py``'s (count, ``PvaServer.update``).

The consumer is a real one (``pvhpc.runtime.consumer.Consumer``, started, its status
channel up) monitoring a record of this process; the calls come from the main thread
instead of pvaccess's monitor thread. Prints one JSON line: the median µs per call of
the floor and of ours, the median difference and its spread; exits 1 unless every call
was counted as processed with no id missed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH)

import numpy as np  # noqa: E402
import pvaccess as pva  # noqa: E402
from floor import frame_checking_callback  # noqa: E402
from floor_republish import republishing_callback  # noqa: E402

from pvhpc.loading import create_processor, load_processor_class  # noqa: E402
from pvhpc.options.consumer import build_parser, consumer_configs  # noqa: E402
from pvhpc.runtime.consumer import Consumer  # noqa: E402
from pvhpc.runtime.stage import LATENCY_SAMPLES_PER_SECOND  # noqa: E402
from pvhpc.simulator.frames import build_frame  # noqa: E402

#: The stream rate whose latency sampling the consumer is given (the headline's 128x128).
STREAM_RATE = 3000


def timed(callback, pv, first_id: int, n: int) -> float:
    """Thread CPU seconds of ``n`` calls of ``callback(pv)``, ids from ``first_id``."""
    set_id = pva.PvObject.setInt
    clock = time.thread_time
    t = clock()
    for uid in range(first_id, first_id + n):
        set_id(pv, "uniqueId", uid)
        callback(pv)
    return clock() - t


def consumer(prefix: str, source: str, output: bool) -> Consumer:
    """Our consumer of ``source`` (not started), with ``-oc`` if ``output``."""
    args = ["-ic", source, "-sc", f"{prefix}:*:status", "-cc", f"{prefix}:*:control"]
    if output:
        args += ["-oc", f"{prefix}:*:out"]
    config = consumer_configs(build_parser().parse_args(args))[0]
    processor = create_processor(
        load_processor_class(config.processor_file, config.processor_class), config.processor_args
    )
    return Consumer(config, processor)


def measure(size: int, frames: int, repeats: int, output: bool) -> dict:
    """Thread CPU seconds per repeat of a baseline, the floor and ours (one process,
    one PvaServer: the consumer's, which also serves the source and the floor's record;
    PvaServers of one process would each answer for every record)."""
    prefix = f"pvcb{os.getpid()}{'oc' if output else ''}"
    source = f"{prefix}:image"
    pv = build_frame(np.zeros((size, size), np.uint16))
    pva.PvObject.setInt(pv, "uniqueId", 1)
    now = time.time()
    pv["timeStamp"] = {"secondsPastEpoch": int(now), "nanoseconds": int(now % 1 * 1e9)}
    ours = consumer(prefix, source, output)
    server = ours.server.pva_server
    server.addRecord(source, pv.copy())  # a copy: setting pv's id posts nothing
    ours.start()
    deadline = time.monotonic() + 10
    while ours.receiver.n_skipped < 1:  # the subscription's first update: the monitor is live
        if time.monotonic() > deadline:
            raise SystemExit(f"callback_cost: no update from {source} in 10 s")
        time.sleep(0.01)
    ours._latency_every = max(1, int(STREAM_RATE / LATENCY_SAMPLES_PER_SECOND))
    count, missed = [0], [0]
    if output:
        server.addRecord(f"{prefix}:floor", pv.copy())
        floor = republishing_callback(server, f"{prefix}:floor", count)
    else:
        floor = frame_checking_callback(count, missed)
    variants = {"baseline": lambda pv: None, "floor": floor, "ours": ours.receiver._on_update}
    seconds: dict[str, list[float]] = {k: [] for k in variants}
    # Each callback sees ids 2, 3, 4...: the record's is 1 (the skipped first update).
    next_id = dict.fromkeys(variants, 2)
    for n in [1000] + [frames] * repeats:  # a warm-up, then the repeats
        for name, callback in variants.items():
            spent = timed(callback, pv, next_id[name], n)
            next_id[name] += n
            if n == frames:
                seconds[name].append(spent)
    check = {
        "expected": next_id["ours"] - 2,
        "processed": ours.n_processed,
        "missed": ours.tracker.n_missed,
        "floorMissed": missed[0],
    }
    logging.getLogger("pvhpc").setLevel(logging.ERROR)  # (the source goes with the server)
    ours.stop_event.set()
    ours.receiver.stop()
    ours.stop_processing()
    ours.server.stop()
    return {"seconds": seconds, "check": check}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=128, help="frame side, pixels [128]")
    p.add_argument("--frames", type=int, default=100000, help="calls per variant and repeat")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("-oc", "--output", action="store_true", help="ours with -oc, republishing floor")
    args = p.parse_args(argv)
    m = measure(args.size, args.frames, args.repeats, args.output)
    sec = m["seconds"]
    per_call = {
        k: [(s - b) / args.frames * 1e6 for s, b in zip(sec[k], sec["baseline"])]
        for k in ("floor", "ours")
    }
    added = [a - b for a, b in zip(per_call["ours"], per_call["floor"])]
    out = {
        "size": args.size,
        "output": args.output,
        "frames": args.frames,
        "repeats": args.repeats,
        "baselineUs": statistics.median(sec["baseline"]) / args.frames * 1e6,
        "floorUs": statistics.median(per_call["floor"]),
        "oursUs": statistics.median(per_call["ours"]),
        "addedUs": statistics.median(added),
        "addedSpread": [min(added), max(added)],
        "check": m["check"],
    }
    sys.stdout.write(json.dumps(out) + "\n")
    c = m["check"]
    if c["processed"] != c["expected"] or c["missed"] or c["floorMissed"]:
        sys.stderr.write(f"callback_cost: not every call was counted as processed: {c}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
