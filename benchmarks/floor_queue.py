"""An experiment beside the floors: pvaccess's own queueing monitor (``qMonitor``
into a ``PvObjectQueue``) drained by a Python thread that counts and republishes each
object on a ``PvaServer`` record.

What a receiver queue (``-rqs``) could cost if the monitor thread never entered
Python: pvaccess copies each update into its C++ queue, the processing thread takes
them with ``get(timeout)``. It knows no id of what the queue rejects (only a count),
which pvhpc's accounting needs; so this is a measurement, not a design. Same options
and JSON line as ``floor_republish.py``; ``-rqs`` is the queue's length.
"""

from __future__ import annotations

import json
import signal
import sys
import threading

import pvaccess as pva
from floor import make_parser, watch


def main(argv=None) -> int:
    p = make_parser(__doc__.splitlines()[0])
    p.add_argument("-oc", "--output-channel", required=True)
    p.add_argument("-rqs", "--receiver-queue-size", type=int, default=1000)
    args = p.parse_args(argv)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    sample = pva.Channel(args.input_channel, pva.PVA).get("field()")
    server = pva.PvaServer()
    name = args.output_channel
    server.addRecord(name, sample.copy())
    update = server.update
    queue = pva.PvObjectQueue(args.receiver_queue_size)
    count = [0]

    def processing():
        get, empty = queue.get, pva.QueueEmpty
        # Until stopped and empty: what was queued is processed.
        while True:
            try:
                pv = get(0.2)
            except empty:
                if stop.is_set():
                    return
                continue
            count[0] += 1
            update(name, pv)

    thread = threading.Thread(target=processing, daemon=True)
    thread.start()
    result = watch(args, None, count, stop, queue=queue)
    stop.set()
    thread.join(5)
    # What the queue still held when the monitor stopped is counted too.
    result["nReceived"] = count[0]
    result["nCounted"] = max(0, count[0] - args.skip)
    result["nRejected"] = int(queue.getCounters().get("nRejected", 0))
    result["nPublished"] = count[0]
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
