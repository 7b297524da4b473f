"""`make demo`: a simulator and two distributing consumers on loopback for ~15 s.

The demo sets the EPICS loopback variables for the processes it starts (and only
for them), so it never broadcasts and never touches your own EPICS setup.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

LOOPBACK = {
    "EPICS_PVA_ADDR_LIST": "127.0.0.1",
    "EPICS_PVA_AUTO_ADDR_LIST": "NO",
    "EPICS_PVAS_INTF_ADDR_LIST": "127.0.0.1",
    "EPICS_PVAS_BEACON_ADDR_LIST": "127.0.0.1",
    "EPICS_PVAS_AUTO_BEACON_ADDR_LIST": "NO",
    "EPICS_CA_ADDR_LIST": "127.0.0.1",
    "EPICS_CA_AUTO_ADDR_LIST": "NO",
    "EPICS_CAS_INTF_ADDR_LIST": "127.0.0.1",
    "EPICS_CAS_BEACON_ADDR_LIST": "127.0.0.1",
    "EPICS_CAS_AUTO_BEACON_ADDR_LIST": "NO",
}

RATE = 1000
SECONDS = 12


def main() -> int:
    env = dict(os.environ, **LOOPBACK, PYTHONUNBUFFERED="1")
    py = [sys.executable, "-m", "pvhpc"]
    print(
        f"pvhpc demo: simulator at {RATE} frames/s (128x128 uint8) for {SECONDS} s, "
        "two consumers sharing the stream through the distributor, all on 127.0.0.1\n",
        flush=True,
    )
    consumers = subprocess.Popen(
        py
        + [
            "consumer",
            "-ic",
            "demo:image",
            "-nc",
            "2",
            "-du",
            "1",
            "-sqs",
            "1000",
            "-sc",
            "demo:consumer:*:status",
            "-cc",
            "demo:consumer:*:control",
            "-oc",
            "demo:consumer:*:output",
            "-rp",
            "4",
        ],
        env=env,
    )
    sim = subprocess.Popen(
        py
        + [
            "sim",
            "-cn",
            "demo:image",
            "-nx",
            "128",
            "-ny",
            "128",
            "-dt",
            "uint8",
            "-fps",
            str(RATE),
            "-rt",
            str(SECONDS),
            "-std",
            "4",
            "-shd",
            "2",
            "-rp",
            str(RATE * 4),
        ],
        env=env,
    )
    try:
        sim_status = sim.wait(SECONDS + 60)
        consumers.send_signal(signal.SIGINT)
        consumer_status = consumers.wait(60)
    except KeyboardInterrupt:
        sim.send_signal(signal.SIGINT)
        consumers.send_signal(signal.SIGINT)
        sim.wait(30)
        consumers.wait(30)
        return 130
    finally:
        for p in (sim, consumers):
            if p.poll() is None:
                p.kill()
    ok = sim_status == 0 and consumer_status == 0
    print("\npvhpc demo finished " + ("cleanly" if ok else "with errors"), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
