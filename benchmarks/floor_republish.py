"""The republishing floor: a bare ``pvaccess.Channel`` monitor whose callback counts
and puts each object on a ``pvaccess.PvaServer`` record.

The lowest CPU cost of a consumer with an output channel (``-oc``) written on top of
``pvaccess``: one ``PvaServer.update`` per frame (pvData copies the object into the
record; pvaccess offers no way around that copy). The record is made from one get of
the input before the monitor starts. Same options and JSON line as ``floor.py``, plus
``-oc/--output-channel`` and ``nPublished``.
"""

from __future__ import annotations

import json
import signal
import sys
import threading

import pvaccess as pva
from floor import make_parser, thread_pinner, watch


def main(argv=None) -> int:
    p = make_parser(__doc__.splitlines()[0])
    p.add_argument("-oc", "--output-channel", required=True)
    args = p.parse_args(argv)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    # The record is made before the monitor starts, from one get of the input (as
    # the consumer does): the callback is only the count and the update.
    sample = pva.Channel(args.input_channel, pva.PVA).get("field()")
    server = pva.PvaServer()
    name = args.output_channel
    server.addRecord(name, sample.copy())
    count = [0]
    on_update = republishing_callback(server, name, count, args.pin)
    result = watch(args, on_update, count, stop)
    result["nPublished"] = count[0]
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


def republishing_callback(server, name: str, count: list, pin_thread: bool = True):
    """The callback: count, then put the object on ``server``'s record ``name``
    (``pin_thread``: keep the thread state, as ``--pin``). Also timed in-process by
    ``callback_cost.py``."""
    update = server.update
    if pin_thread:
        pinned, pin = thread_pinner()
        get_ident = threading.get_ident

        def on_update(pv):
            count[0] += 1
            update(name, pv)
            if get_ident() not in pinned:
                pin()

    else:

        def on_update(pv):
            count[0] += 1
            update(name, pv)

    return on_update


if __name__ == "__main__":
    sys.exit(main())
