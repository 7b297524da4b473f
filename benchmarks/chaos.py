"""Chaos run: a workflow under random faults, every frame accounted for at every stage.

    .venv/bin/python benchmarks/chaos.py                 # 10 minutes (make chaos)
    .venv/bin/python benchmarks/chaos.py --minutes 2 --out /tmp/chaos.md

The workflow: simulator -> mirror -> 4 consumers (one distributor set, supervised,
``--restart-failed``) -> collector writing HDF5 (Hdf5AdImageWriter). Every 10-30 s
(``--gap``), at random (``--seed``), one of:

* **kill**: a consumer process gets SIGKILL; its parent starts it again;
* **restart**: a consumer is sent the ``restart`` control command (drains, reports,
  starts again);
* **source**: the simulator is stopped and a new one started on the same channel
  (ids count from 1 again: a new stream for every stage).

At the end the stream is drained and stopped, and at every stage:

* mirror: frames sent by all simulators + 1 = published + overruns + errors (the
  one: the first simulator's placeholder, uniqueId 0, which creates the mirror's
  channel before the first frame); received = published + skipped + errors
  (skipped: a restarted simulator's placeholder, or an object already published);
* consumer set: mirror published - 1 (the placeholder, every consumer's initial
  update, skipped) = processed + missed + rejected + errors + lost with a dead
  consumer (the parent's ``consumer-set`` report);
* collector: frames received = processed + rejected + errors + skipped (each
  producer's first update after it connects is its output's placeholder), nothing
  left cached;
* writer: frames in the HDF5 file = collector processed.

The events and the counts go to ``docs/chaos.md`` (``--out``); exit 0 if every
check holds, 1 if not. Every wait is bounded; all traffic stays on loopback.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import random
import shutil
import signal
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import ROOT, Proc, get, log, unique_prefix, wait_for  # noqa: E402

N_CONSUMERS = 4


class Chaos:
    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        self.p = unique_prefix("chaos")
        self.dir = tempfile.mkdtemp(prefix="pvhpc-chaos-")
        self.sims: list[Proc] = []
        self.events: list[dict] = []
        self.t0 = time.monotonic()

    # -- stages --------------------------------------------------------------------

    def start_sim(self) -> Proc:
        a = self.args
        sim = Proc(
            f"sim{len(self.sims) + 1}",
            ["sim", "-cn", f"{self.p}:src", "-nx", a.size, "-ny", a.size, "-fps", a.fps,
             "-rt", a.minutes * 60 + 120, "-std", 3, "-shd", 1, "-rf", "json"],
            tag="chaos",
        )  # fmt: skip
        self.sims.append(sim)
        return sim

    def start(self) -> None:
        p = self.p
        self.mirror = Proc(
            "mirror", ["mirror", "-cm", f"({p}:image,{p}:src,pva,1000)", "-rp", 5, "-rf", "json"],
            tag="chaos",
        )  # fmt: skip
        self.consumers = Proc(
            "consumers",
            ["consumer", "-ic", f"{p}:image", "-nc", N_CONSUMERS, "-du", 1, "-sqs", 100,
             "--restart-failed", "-oc", f"{p}:c:*:output", "-sc", f"{p}:c:*:status",
             "-cc", f"{p}:c:*:control", "-rp", 5, "-rf", "json"],
            tag="chaos",
        )  # fmt: skip
        writer = {"outputDirectory": self.dir, "nImagesPerFile": 0}
        self.collector = Proc(
            "collector",
            ["collector", "-ic", f"{p}:c:*:output", "-pid", "1,2,3,4", "-ccs", 200, "-cgt", 2,
             "-sc", f"{p}:col:*:status", "-pc", "Hdf5AdImageWriter", "-pa", json.dumps(writer),
             "-rp", 5, "-rf", "json"],
            tag="chaos",
        )  # fmt: skip
        up = wait_for(
            lambda: (
                all(get(f"{p}:c:{i}:status", 1) for i in range(1, N_CONSUMERS + 1))
                and get(f"{p}:col:1:status", 1)
            ),
            60,
        )
        if not up:
            raise SystemExit("chaos: the consumers and the collector did not come up in 60 s")
        self.start_sim()

    # -- events --------------------------------------------------------------------

    def event(self, what: str, detail: str) -> None:
        t = time.monotonic() - self.t0
        self.events.append({"t": round(t, 1), "what": what, "detail": detail})
        log(f"{t:6.1f} s  {what}: {detail}")

    def kill(self) -> None:
        i = self.rng.randint(1, N_CONSUMERS)
        st = get(f"{self.p}:c:{i}:status", 2)
        if not st:
            self.event("kill", f"consumer {i} is not up (starting again); skipped")
            return
        try:
            os.kill(int(st["pid"]), signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.event("kill", f"consumer {i} (pid {st['pid']}) SIGKILL")

    def restart(self) -> None:
        from pvhpc.client import send_command

        i = self.rng.randint(1, N_CONSUMERS)
        try:
            answer = send_command(f"{self.p}:c:{i}:control", "restart", "", timeout=5)
        except Exception as exc:  # noqa: BLE001 - a consumer starting again does not answer
            answer = f"no answer ({exc})"
        self.event("restart", f"consumer {i}: {answer}")

    def source(self) -> None:
        old = self.sims[-1]
        old.stop(10)
        self.event("source", f"{old.name} stopped after {sim_sent(old)} frames; a new one starts")
        self.start_sim()

    def run_events(self) -> None:
        a = self.args
        end = self.t0 + a.minutes * 60
        actions = {"kill": self.kill, "restart": self.restart, "source": self.source}
        while True:
            wait = self.rng.uniform(*a.gap)
            if time.monotonic() + wait > end:
                break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                for proc in (self.mirror, self.consumers, self.collector):
                    if not proc.alive():
                        raise SystemExit(f"chaos: {proc.name} exited:\n{proc.text()[-3000:]}")
                time.sleep(0.5)
            actions[self.rng.choice(sorted(actions))]()
        time.sleep(max(0.0, end - time.monotonic()))

    # -- the end -------------------------------------------------------------------

    def drain_and_stop(self) -> dict:
        self.sims[-1].stop(10)
        sent = sum(sim_sent(s) for s in self.sims)
        self.event("end", f"source stopped; {sent} frames sent by {len(self.sims)} simulator(s)")

        def quiet(channels, key, seconds=3.0):
            history = []

            def settled():
                now = time.monotonic()
                values = [get(c, 2) for c in channels]
                total = sum(_dig(v, key) for v in values if v)
                history.append((now, total))
                changed = [t for t, v in history if v != total]
                return now - (changed[-1] if changed else history[0][0]) > seconds

            return wait_for(settled, 60, 0.5)

        statuses = [f"{self.p}:c:{i}:status" for i in range(1, N_CONSUMERS + 1)]
        quiet(statuses, "processorStats.nProcessed")
        codes = {"consumers": self.consumers.stop(30)}
        quiet([f"{self.p}:col:1:status"], "processorStats.nProcessed")
        codes["collector"] = self.collector.stop(30)
        codes["mirror"] = self.mirror.stop(10)
        return {"sent": sent, "codes": codes}

    def judge(self, end: dict) -> dict:
        sent = end["sent"]
        mirror = [r for r in self.mirror.reports() if r.get("kind") == "mirror"][-1]
        m = mirror["channels"][0]
        sets = [r for r in self.consumers.reports() if r.get("kind") == "consumer-set"]
        cset = sets[-1] if sets else {}
        col = [r for r in self.collector.reports() if r.get("final") and "collectorId" in r][-1]
        files = glob.glob(os.path.join(self.dir, "*.h5"))
        import h5py

        in_files = 0
        for f in files:
            with h5py.File(f, "r") as h:
                in_files += h["/entry/data/data"].shape[0]
        ps, rs = col["processorStats"], col["receiverStats"]
        set_counted = sum(cset.get(k, 0) for k in ("processed", "missed", "rejected", "errors"))
        set_counted += cset.get("nLost", 0)
        checks = [
            (
                "mirror: sent + 1 placeholder = published + overruns + errors",
                sent + 1,
                m["published"] + m["overruns"] + m["errors"],
            ),
            (
                "mirror: received = published + skipped + errors",
                m["received"],
                m["published"] + m["skipped"] + m["errors"],
            ),
            (
                "consumers: mirror published - placeholder = processed + missed + rejected + "
                "errors + lost",
                m["published"] - 1,
                set_counted,
            ),
            (
                "collector: received = processed + rejected + errors + skipped",
                rs["nReceived"],
                ps["nProcessed"] + rs["nRejected"] + ps["nErrors"] + rs["nErrors"] + rs["nSkipped"],
            ),
            ("collector: nothing left cached", 0, col["collectorStats"]["nCached"]),
            ("writer: frames in the file = collector processed", ps["nProcessed"], in_files),
        ]
        ok = all(a == b for _, a, b in checks) and end["codes"]["collector"] == 0
        return {
            "ok": ok,
            "checks": checks,
            "set": cset,
            "mirror": m,
            "collector": {"processed": ps["nProcessed"], "missed": ps["nMissed"],
                          "rejected": rs["nRejected"], "errors": ps["nErrors"] + rs["nErrors"],
                          "received": rs["nReceived"]},
            "codes": end["codes"],
            "sent": sent,
        }  # fmt: skip

    def cleanup(self) -> None:
        for proc in [*self.sims, self.mirror, self.consumers, self.collector]:
            if proc.alive():
                proc.stop(5)
        shutil.rmtree(self.dir, ignore_errors=True)


def sim_sent(sim: Proc) -> int:
    finals = [r for r in sim.reports() if r.get("event") == "report" and r.get("final")]
    return int(finals[-1]["nSent"]) if finals else 0


def _dig(d: dict, dotted: str) -> int:
    for key in dotted.split("."):
        d = d.get(key, {}) if isinstance(d, dict) else {}
    return int(d) if isinstance(d, (int, float)) else 0


def write_report(path: str, args, chaos: Chaos, verdict: dict) -> None:
    s, c = verdict["set"], verdict["collector"]
    lost_by = ", ".join(
        f"consumer {k}: {v['n']}" for k, v in sorted(s.get("lostWithConsumer", {}).items())
    )
    kinds = {k: sum(e["what"] == k for e in chaos.events) for k in ("kill", "restart", "source")}
    lines = [
        "# Chaos run",
        "",
        f"`benchmarks/chaos.py --minutes {args.minutes:g} --seed {args.seed} --fps {args.fps:g}` "
        f"on {platform.node()} ({os.cpu_count()} cores), {time.strftime('%Y-%m-%d %H:%M')}: "
        f"simulator ({args.size}x{args.size} uint8, {args.fps:g} fps, even pacing) -> mirror -> "
        f"{N_CONSUMERS} consumers (`-du 1 -sqs 100 --restart-failed`) -> collector "
        "(`-ccs 200 -cgt 2`, Hdf5AdImageWriter). An event every "
        f"{args.gap[0]:g}-{args.gap[1]:g} s: {kinds['kill']} kills (SIGKILL), "
        f"{kinds['restart']} restart commands, {kinds['source']} source restarts.",
        "",
        f"**Verdict: {'PASS' if verdict['ok'] else 'FAIL'}**: every frame "
        + ("in a counter at every stage." if verdict["ok"] else "NOT accounted for; see below."),
        "",
        "| check | expected | counted | |",
        "|---|---:|---:|---|",
    ]
    for name, a, b in verdict["checks"]:
        lines.append(f"| {name} | {a} | {b} | {'ok' if a == b else 'MISMATCH'} |")
    lines += [
        "",
        f"Consumer set: {s.get('processed', 0)} processed, {s.get('missed', 0)} missed, "
        f"{s.get('rejected', 0)} rejected, {s.get('errors', 0)} errors, "
        f"{s.get('nLost', 0)} lost with a killed consumer "
        f"({lost_by or 'none'}), "
        f"over {s.get('nEpochs', 1)} stream(s). Collector: {c['received']} received, "
        f"{c['processed']} processed and written, {c['missed']} ids missed in the merged "
        f"stream (the frames lost upstream), {c['rejected']} rejected. Exit statuses: "
        f"{verdict['codes']}.",
        "",
        "## Events",
        "",
        "| t (s) | event | detail |",
        "|---:|---|---|",
    ]  # fmt: skip
    lines += [f"| {e['t']} | {e['what']} | {e['detail']} |" for e in chaos.events]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--fps", type=float, default=100.0)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--gap", type=float, nargs=2, default=(10.0, 30.0), metavar=("MIN", "MAX"))
    ap.add_argument("--out", default=str(ROOT / "docs" / "chaos.md"))
    ap.add_argument("--json", action="store_true", help="also print the verdict as JSON")
    args = ap.parse_args(argv)
    chaos = Chaos(args)
    try:
        chaos.start()
        chaos.run_events()
        verdict = chaos.judge(chaos.drain_and_stop())
    finally:
        chaos.cleanup()
    if args.out:
        write_report(args.out, args, chaos, verdict)
        log(f"wrote {args.out}")
    for name, a, b in verdict["checks"]:
        log(f"{'ok ' if a == b else 'BAD'} {name}: {a} vs {b}")
    if args.json:
        print(json.dumps({"ok": verdict["ok"], "events": chaos.events, "sent": verdict["sent"],
                          "set": verdict["set"], "checks": verdict["checks"]}))  # fmt: skip
    log("PASS" if verdict["ok"] else "FAIL")
    return 0 if verdict["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
