"""A consumer of a distributed pair killed mid-stream, N times: is every frame counted?

    .venv/bin/python benchmarks/kill.py              # 10 runs, the figure in docs/reliability.md
    .venv/bin/python benchmarks/kill.py --runs 3 --json

Each run: the simulator at 200 fps for 10 s (2000 frames, even pacing), ``consumer
-nc 2 -du 1 -sqs 100``, consumer 2 killed with SIGKILL about 5 s in. Per run it
reports the frames sent, the set's counters from the parent's ``consumer-set``
report (processed + missed + rejected + errors + lost with consumer 2), whether
they add up to what was sent, and the **re-routing time**: how long after the kill
the source's distributor still handed frames to the dead consumer, from the last
lost id and the stream's pace (a lost id sent before the kill was in the dead
process's queue; one sent after it went to a connection the server had not yet
seen close).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import Proc, get, log, unique_prefix, wait_for  # noqa: E402

FPS, SECONDS = 200, 10


def one_run(i: int) -> dict:
    p = unique_prefix("kill")
    group = Proc(
        "consumers",
        ["consumer", "-ic", f"{p}:image", "-nc", 2, "-du", 1, "-sqs", 100,
         "-sc", f"{p}:c:*:status", "-rp", 1, "-rf", "json"],
        tag="kill",
    )  # fmt: skip
    if not wait_for(lambda: get(f"{p}:c:1:status", 1) and get(f"{p}:c:2:status", 1), 40):
        raise SystemExit("kill: the consumers did not come up in 40 s")
    sim = Proc(
        "sim",
        ["sim", "-cn", f"{p}:image", "-nx", 64, "-ny", 64, "-fps", FPS, "-rt", SECONDS,
         "-std", 2, "-shd", 5, "-rf", "json"],
        tag="kill",
    )  # fmt: skip
    try:
        st = wait_for(
            lambda: (
                (s := get(f"{p}:c:2:status", 1))
                and s["processorStats"]["nProcessed"] >= FPS * 5 // 2
                and s
            ),
            40,
            0.02,
        )
        s1 = get(f"{p}:c:1:status", 2)
        t_kill = time.time()
        os.kill(int(st["pid"]), signal.SIGKILL)
        sim.popen.wait(SECONDS + 30)
        finals = [r for r in sim.reports() if r.get("event") == "report" and r.get("final")]
        sent = int(finals[-1]["nSent"])
        wait_for(
            lambda: get(f"{p}:c:1:status", 2)["processorStats"]["lastObjectId"] >= sent - 1, 20
        )
    finally:
        group.stop(30)
        sim.stop(5)
    report = [r for r in group.reports() if r.get("kind") == "consumer-set"][-1]
    counted = sum(report[k] for k in ("processed", "missed", "rejected", "errors", "nLost"))
    lost = report["lostWithConsumer"].get("2", {})
    # The id the source was sending at the kill, from consumer 1's first frame and the pace.
    ps1 = s1["processorStats"]
    id_at_kill = ps1["firstObjectId"] + (t_kill - ps1["firstObjectTime"]) * FPS
    last_lost = lost.get("lastId")
    reroute = max(0.0, (last_lost - id_at_kill) / FPS) if last_lost is not None else 0.0
    row = {
        "run": i,
        "sent": sent,
        "processed": report["processed"],
        "missed": report["missed"],
        "rejected": report["rejected"],
        "errors": report["errors"],
        "lost": report["nLost"],
        "counted": counted,
        "ok": counted == sent,
        "lostIds": [lost.get("firstId"), last_lost],
        "idAtKill": round(id_at_kill),
        "rerouteMs": round(reroute * 1000, 1),
    }
    log(
        f"run {i}: sent {sent}, counted {counted} ({report['processed']} processed + "
        f"{report['missed']} missed + {report['rejected']} rejected + {report['errors']} "
        f"errors + {report['nLost']} lost), re-routing {row['rerouteMs']} ms"
    )
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    rows = [one_run(i + 1) for i in range(args.runs)]
    reroutes = [r["rerouteMs"] for r in rows]
    lost = [r["lost"] for r in rows]
    summary = {
        "runs": len(rows),
        "allCounted": all(r["ok"] for r in rows),
        "lostMedian": round(statistics.median(lost), 1),
        "lostRange": [min(lost), max(lost)],
        "rerouteMsMedian": round(statistics.median(reroutes), 1),
        "rerouteMsRange": [min(reroutes), max(reroutes)],
    }
    log(
        f"{sum(r['ok'] for r in rows)}/{len(rows)} runs put every frame in a counter; lost "
        f"with the killed consumer: median {summary['lostMedian']} (range {min(lost)}-"
        f"{max(lost)}); re-routing: median {summary['rerouteMsMedian']} ms (range "
        f"{min(reroutes)}-{max(reroutes)} ms)"
    )
    if args.json:
        print(json.dumps({"summary": summary, "runs": rows}))
    return 0 if summary["allCounted"] else 1


if __name__ == "__main__":
    sys.exit(main())
