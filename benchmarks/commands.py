"""What every benchmark runs and reads: the commands of ours, the reference and the
floors, and their statistics in one shape.

The reference's commands run as ``python -c 'from pvapy.cli.X import main; main()'``
(our console scripts take the same names); their statistics are read from what they
print. Every process gets :data:`ENV`: the loopback EPICS settings, and this clone's
``src`` first on the path, so that the code measured is the code beside this file.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import sys
from pathlib import Path

from pvhpc.loopback import LOOPBACK_ENV as LOOPBACK_DEFAULTS

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
PY = sys.executable
LOOPBACK_ENV = ROOT.parent / "shared" / "epics-loopback.env"

OURS, REF, FLOOR, OURS_NOLAT = "ours", "reference", "floor", "ours-nolatency"
# Our consumer without an output channel, and the floor that republishes each object.
OURS_NOOC, FLOOR_PUB = "ours-no-oc", "floor-republish"
# An experiment: pvaccess's queueing monitor drained by a Python thread (floor_queue.py).
FLOOR_QUEUE = "floor-queue"
# The counting floor that also reads each frame's id and counts the gaps (floor.py --ids).
FLOOR_IDS = "floor-ids"
FLOORS = (FLOOR, FLOOR_IDS, FLOOR_PUB, FLOOR_QUEUE)
# Our consumer with a receiver queue (a processing thread takes the frames), its size.
OURS_RQS, RQS = "ours-rqs", 1000
REF_CONSUMER = [PY, "-c", "from pvapy.cli.hpcConsumer import main; main()"]
REF_COLLECTOR = [PY, "-c", "from pvapy.cli.hpcCollector import main; main()"]
REF_SIM = [PY, "-c", "from pvapy.cli.adSimServer import main; main()"]
REF_PASSTHROUGH = "pvapy.hpc.userDataProcessor.UserDataProcessor"
OUR_CMD = [PY, "-m", "pvhpc"]

# Rates 12 % apart (the R20 series), the ladder every search moves on.
LADDER = [
    round(v)
    for v in (
        m * 10**e
        for e in range(1, 5)
        for m in (
            1,
            1.12,
            1.25,
            1.4,
            1.6,
            1.8,
            2,
            2.24,
            2.5,
            2.8,
            3.15,
            3.55,
            4,
            4.5,
            5,
            5.6,
            6.3,
            7.1,
            8,
            9,
        )
    )
] + [100000]
# Server queue size per frame size (as in the seed's throughput tests).
SERVER_QUEUE = {128: 2000, 512: 1000, 1024: 500, 2048: 200}
# Distinct frames the simulator prepares per frame size (memory stays small).
N_DISTINCT = {128: 100, 512: 50, 1024: 20, 2048: 10}


def loopback_env() -> dict:
    env = dict(os.environ)
    values = dict(LOOPBACK_DEFAULTS)  # the developers' file, when present, has the last word
    if LOOPBACK_ENV.is_file():
        for line in LOOPBACK_ENV.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                key, _, value = line.partition("=")
                values[key.strip()] = value.strip()
    env.update(values)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = str(ROOT / "src")
    return env


ENV = loopback_env()
LOGDIR = ROOT / "out" / "bench"
_seq = itertools.count(1)


def uid() -> str:
    return f"pvb{os.getpid()}n{next(_seq)}"


# The sources a consumer benchmark can take: our simulator evenly paced (one frame at
# each deadline, as a detector triggers; its default), the same in bursts (what is due
# once per 1 ms tick), and the reference's simulator.
EVEN, BURST = "even", "burst"
SOURCES = (EVEN, REF, BURST)


def sim_cmd(
    impl: str,
    channel: str,
    size: int,
    rate: float,
    runtime: float,
    std: float,
    shd: float = 120,
    pacing: str = EVEN,
) -> list:
    common = [
        "-cn",
        channel,
        "-nx",
        str(size),
        "-ny",
        str(size),
        "-dt",
        "uint8",
        "-fps",
        f"{rate:g}",
        "-rt",
        f"{runtime:g}",
        "-nf",
        str(N_DISTINCT.get(size, 20)),
        "-std",
        f"{std:g}",
        "-shd",
        f"{shd:g}",
    ]
    if impl == REF:
        return [*REF_SIM, *common, "-rp", str(10**9), "-dc"]
    return [*OUR_CMD, "sim", *common, "-rp", "0", "-pm", pacing]


SIM_READY = {OURS: r"serving ", REF: r"Expected data rate"}
SIM_DONE = {
    OURS: r"done, sent (\d+) frames in ([\d.]+) s, ([\d.]+) fps",
    REF: r"Published frames:\s+(\d+) @ ([\d.]+) fps",
}


def consumer_cmd(
    impl: str,
    channel: str,
    tag: str,
    sqs: int,
    n_consumers: int = 1,
    runtime: float = 600,
    processor: tuple = (),
) -> list:
    """The command of consumer variant ``impl``; ``processor``: the arguments naming
    another processor than the passthrough (ours and the reference take the same)."""
    if impl in FLOORS:
        extra = {
            FLOOR: [],
            FLOOR_IDS: ["--ids"],
            FLOOR_PUB: ["-oc", f"{tag}:1:out"],
            FLOOR_QUEUE: ["-oc", f"{tag}:1:out", "-rqs", str(RQS)],
        }[impl]
        script = {FLOOR_PUB: "floor_republish.py", FLOOR_QUEUE: "floor_queue.py"}.get(
            impl, "floor.py"
        )
        return [
            PY,
            str(BENCH / script),
            *extra,
            "-ic",
            channel,
            "-sqs",
            str(sqs),
            "-rt",
            f"{runtime:g}",
            "--resolution",
            "0.25",
            "--pin",
        ]
    common = [
        "-ic",
        channel,
        *([] if impl == OURS_NOOC else ["-oc", f"{tag}:*:out"]),
        "-sc",
        f"{tag}:*:status",
        "-cc",
        f"{tag}:*:control",
        "-sqs",
        str(sqs),
        "-rt",
        f"{runtime:g}",
    ]
    if n_consumers > 1:
        common += ["-nc", str(n_consumers), "-du", "1"]
    if impl == REF:
        return [*REF_CONSUMER, *common, *(processor or ["-pc", REF_PASSTHROUGH]), "-dc"]
    common += list(processor)
    if impl == OURS_RQS:
        common += ["-rqs", str(RQS)]
    if impl == OURS_NOLAT:
        return [PY, str(BENCH / "nolatency.py"), *common, "--report-format", "json"]
    return [*OUR_CMD, "consumer", *common, "--report-format", "json"]


# -- reading statistics --------------------------------------------------------------

_NUM = r"(-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)"


def parse_ref_stats(text: str, kind: str = "consumer") -> dict[int, dict]:
    """The reference's printed statistics: the last dict printed for each stage id."""
    out: dict[int, dict] = {}
    # Each dict starts a line with "{ "; the combined stats of -nc > 1 have no id.
    for block in re.split(r"(?m)^(?=\{ )", text):
        m = re.match(r"\{ '(consumer|collector)Id': (\d+)", block)
        if not m:
            continue
        stats: dict[str, dict] = {}
        # Innermost dicts; a collector repeats receiverStats per producer: summed.
        for section in re.finditer(r"'(\w+Stats)': \{([^{}]*)\}", block):
            values = stats.setdefault(section.group(1), {})
            for k, v in re.findall(rf"'(\w+)': {_NUM}", section.group(2)):
                values[k] = values.get(k, 0.0) + float(v)
        out[int(m.group(2))] = stats
    return out


def parse_our_stats(text: str) -> dict[int, dict]:
    """Our ``--report-format json`` output: the final snapshot of each stage id."""
    out: dict[int, dict] = {}
    for line in text.splitlines():
        if not line.startswith("{"):
            continue
        try:
            snap = json.loads(line)
        except json.JSONDecodeError:
            continue
        sid = snap.get("consumerId", snap.get("collectorId"))
        # A consumer set's parent reports too ("consumer-set", no stage id): not a stage.
        if snap.get("final") and sid is not None:
            out[sid] = snap
    return out


def summarize(per_id: dict[int, dict]) -> dict:
    """Counts summed over stages, in one shape for ours and the reference."""

    def total(section, key):
        return sum(int(s.get(section, {}).get(key, 0) or 0) for s in per_id.values())

    lat50 = [s["processorStats"].get("latencyP50") for s in per_id.values()]
    lat99 = [s["processorStats"].get("latencyP99") for s in per_id.values()]
    return {
        "nStages": len(per_id),
        "received": total("receiverStats", "nReceived"),
        "processed": total("processorStats", "nProcessed"),
        "missed": total("processorStats", "nMissed"),
        "errors": total("processorStats", "nErrors") + total("receiverStats", "nErrors"),
        "overruns": total("receiverStats", "nOverruns"),
        "rejected": total("receiverStats", "nRejected") + total("queueStats", "nRejected"),
        "published": total("publisherStats", "nPublished"),
        "firstIds": sorted(
            int(s["processorStats"].get("firstObjectId", -1))
            for s in per_id.values()
            if "processorStats" in s
        ),
        "latencyP50": max((v for v in lat50 if v is not None), default=None),
        "latencyP99": max((v for v in lat99 if v is not None), default=None),
    }


def consumer_stats(impl: str, text: str) -> dict:
    """A consumer set's final counts from its output, in one shape for every impl."""
    if impl in FLOORS:
        res = _last_json(text)
        return {
            "processed": res.get("nCounted", 0),
            "overruns": res.get("nOverruns", 0),
            "missed": res.get("nMissed", 0),  # only the frame-checking floor knows
            "rejected": 0,
            "errors": 0,
            "firstIds": [1],
        }
    if impl == REF:
        return summarize(parse_ref_stats(text))
    return summarize(parse_our_stats(text))


def lossless(stats: dict, sent: int) -> bool:
    return (
        stats["processed"] == sent
        and stats["missed"] == 0
        and stats["overruns"] == 0
        and stats["rejected"] == 0
        and stats["errors"] == 0
    )


def _last_json(text: str) -> dict:
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                pass
    return {}
