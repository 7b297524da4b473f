"""The transport floor: a bare ``pvaccess.Channel`` monitor whose callback only counts.

Used by ``benchmarks/run.py`` as the lowest CPU cost any consumer written on top of
``pvaccess`` can reach, as an independent rate meter for the simulators (arrival
times of the first and last frame), and, with ``--latency``, as a probe measuring
source timestamp → arrival on a consumer's output channel. With ``--ids``, the
*frame-checking floor*: the callback also reads each frame's ``uniqueId`` and counts
the gaps, the least a consumer that accounts for every frame (processed or missed)
does per frame.

Runs until ``--runtime`` seconds passed or SIGINT/SIGTERM, then prints one JSON
line: ``nReceived`` (every update, the initial one included), ``nCounted`` (after
skipping the first ``--skip`` updates), ``firstTime``/``lastTime`` (wall-clock
arrival of the first and last counted update, to ``--resolution``; with ``--latency``,
exact), ``nOverruns``, with ``--ids``, ``nMissed`` (frames the ids skipped) and, with
``--latency``, ``latencyP50``/``latencyP99`` in seconds.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time

import pvaccess as pva


def make_parser(description: str) -> argparse.ArgumentParser:
    """The options of both floors."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("-ic", "--input-channel", required=True)
    p.add_argument("-sqs", "--server-queue-size", type=int, default=0)
    p.add_argument("-rt", "--runtime", type=float, default=60.0)
    p.add_argument("--skip", type=int, default=1)
    p.add_argument("--latency", action="store_true")
    p.add_argument(
        "--pin",
        action="store_true",
        help="keep the monitor thread's Python thread state between callbacks, as "
        "pvhpc's receiver does (the floors of the consumer benchmarks use it)",
    )
    p.add_argument(
        "--ids",
        action="store_true",
        help="read each frame's uniqueId and count the gaps (the frame-checking floor; "
        "implies --pin)",
    )
    p.add_argument(
        "--resolution", type=float, default=0.005, help="arrival-time resolution, s [0.005]"
    )
    return p


def main(argv=None) -> int:
    args = make_parser(__doc__.splitlines()[0]).parse_args(argv)

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    count, missed = [0], [0]
    stamps: list[float] = []
    arrivals: list[float] = []
    if args.latency:
        get_long, get_int = pva.PvObject.getLong, pva.PvObject.getInt
        now = time.time
        lat_append, arr_append = stamps.append, arrivals.append

        def on_update(pv):
            t = now()
            count[0] += 1
            lat_append(
                t
                - get_long(pv, "timeStamp.secondsPastEpoch")
                - get_int(pv, "timeStamp.nanoseconds") * 1e-9
            )
            arr_append(t)

    elif args.ids:
        on_update = frame_checking_callback(count, missed)

    elif args.pin:
        pinned, pin = thread_pinner()
        get_ident = threading.get_ident

        def on_update(pv):
            count[0] += 1
            if get_ident() not in pinned:
                pin()

    else:

        def on_update(pv):
            count[0] += 1

    result = watch(args, on_update, count, stop)
    if args.ids:
        result["nMissed"] = missed[0]
    if args.latency:
        lat = sorted(stamps[args.skip :])
        arr = arrivals[args.skip :]
        if arr:
            result["firstTime"], result["lastTime"] = arr[0], arr[-1]
        result["latencyP50"] = lat[len(lat) // 2] if lat else 0.0
        result["latencyP99"] = lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else 0.0
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


def frame_checking_callback(count: list, missed: list):
    """The frame-checking floor's callback: read the id, count the gaps and the frame.
    Pins its thread state as ``--pin`` does (the floor of a consumer, which pins).
    Also timed in-process by ``callback_cost.py``."""
    pinned, pin = thread_pinner()
    get_ident = threading.get_ident
    get_int = pva.PvObject.getInt
    last = [None]

    def on_update(pv):
        uid = get_int(pv, "uniqueId")
        if last[0] is not None and uid != last[0] + 1:
            missed[0] += max(0, uid - last[0] - 1)
        last[0] = uid
        count[0] += 1
        if get_ident() not in pinned:
            pin()

    return on_update


def thread_pinner():
    """``(pinned, pin)``: ``pin()``, called in a pvaccess callback, keeps that thread's
    Python thread state for good (one extra ``PyGILState_Ensure``); ``pinned`` holds
    the threads done. Without it every callback creates and deletes a thread state."""
    import ctypes

    ensure = ctypes.pythonapi.PyGILState_Ensure
    ensure.restype, ensure.argtypes = ctypes.c_int, []
    pinned: set = set()

    def pin():
        pinned.add(threading.get_ident())
        ensure()

    return pinned, pin


def watch(args, on_update, count: list, stop: threading.Event, queue=None) -> dict:
    """Monitor ``args.input_channel`` with ``on_update`` (or, given a
    ``pvaccess.PvObjectQueue``, into that queue) until ``args.runtime`` passed or
    ``stop`` is set; the counts and arrival times (``count[0]`` is the count of what
    was handled). Shared by the other floors (``floor_republish.py``, ``floor_queue.py``)."""
    request = "field()"
    if args.server_queue_size > 0:
        request = f"record[queueSize={args.server_queue_size}]field()"
    channel = pva.Channel(args.input_channel, pva.PVA)
    if queue is not None:
        channel.qMonitor(queue, request)
    else:
        channel.monitor(on_update, request)

    # Arrival times of the first and last counted update, without touching the
    # callback: a watcher notes when the count changes (``--resolution``).
    first_time = last_time = 0.0
    last_seen = 0
    deadline = time.monotonic() + args.runtime
    while not stop.is_set() and time.monotonic() < deadline:
        stop.wait(args.resolution)
        n = count[0]
        if n != last_seen:
            t = time.time()
            if last_seen <= args.skip < n and not first_time:
                first_time = t
            last_seen, last_time = n, t
    try:
        channel.stopMonitor()
    except pva.PvaException:
        pass
    try:
        overruns = int(channel.getMonitorCounters().get("nOverruns", 0))
    except Exception:  # noqa: BLE001 - counters are a bonus
        overruns = -1
    n = count[0]
    result = {
        "nReceived": n,
        "nCounted": max(0, n - args.skip),
        "firstTime": first_time,
        "lastTime": last_time,
        "nOverruns": overruns,
    }
    return result


if __name__ == "__main__":
    sys.exit(main())
