"""Control commands put by p4p (PVXS), with each of its request styles, on consumer and
collector control channels: every put acts exactly once and gets its answer.

p4p's styles ask for different processing: the default sends no pvRequest options,
``wait=True`` asks for ``record[block=true,process=passive]``, ``wait=False`` for
``block=false,process=passive``, ``process='true'|'false'`` for that ``process`` value.
The processor (p4p_command_processor.py) counts the configure and resetStats calls it
gets; ``get_stats`` and ``reset_stats`` each publish the status once (objectId + 1).
"""

from __future__ import annotations

import json
import os

import pytest
from p4p_source import P4pMonitor, P4pSource, p4p_context, p4p_get, publish_interleaved

from harness import control, final_reports, json_reports, pv_get, wait_for

pytestmark = pytest.mark.e2e

HERE = os.path.dirname(os.path.abspath(__file__))
PROCESSOR = os.path.join(HERE, "p4p_command_processor.py")

STYLES = {
    "default": {},
    "wait=True": {"wait": True},
    "wait=False": {"wait": False},
    "process='true'": {"process": "true"},
    "process='false'": {"process": "false"},
}
N_FRAMES = 6


@pytest.fixture
def ctx():
    c = p4p_context()
    yield c
    c.close()


@pytest.fixture
def sources(prefix):
    """Two p4p sources: the consumer reads the first, the collector both."""
    made = [P4pSource(f"{prefix}:p1"), P4pSource(f"{prefix}:p2")]
    yield made
    for s in made:
        s.close()


def start_stage(procs, prefix, tmp_path, kind: str, *extra: str, name: str | None = None):
    """A consumer (on source 1) or a collector (of sources 1 and 2) with the counting
    processor and no periodic report: its status changes only on commands and at stop."""
    if kind == "consumer":
        args = ["consumer", "-ic", f"{prefix}:p1"]
    else:
        args = ["collector", "-pid", "1,2", "-ic", f"{prefix}:p*", "-ccs", "4"]
    return procs.start(
        *args,
        "-oc",
        f"{prefix}:{kind}:*:output",
        "-sc",
        f"{prefix}:{kind}:*:status",
        "-cc",
        f"{prefix}:{kind}:*:control",
        "-pf",
        PROCESSOR,
        "-pc",
        "CommandCountingProcessor",
        "-pa",
        json.dumps({"outputFile": str(tmp_path / f"{kind}-{{processorId}}.json")}),
        "-sqs",
        "100",
        "-rf",
        "json",
        *extra,
        name=name or kind,
    )


def fresh_status(stage_id: int, kind: str, prefix: str):
    """Statistics published on request (through pvaccess, our own client)."""
    control(f"{prefix}:{kind}:{stage_id}:control", "get_stats")
    return pv_get(f"{prefix}:{kind}:{stage_id}:status")


def wait_connected(procs, prefix, kind: str, stage_id: int = 1) -> None:
    def connected():
        st = fresh_status(stage_id, kind, prefix)
        if kind == "collector":
            return all(p["nReceived"] >= 1 for p in st["producerStats"].values())
        return st["receiverStats"]["nReceived"] >= 1

    wait_for(connected, 30, f"{kind} {stage_id} to connect", interval=0.2, procs=procs)


def answer_of(command: str, args: dict) -> str:
    """What the statusMessage says after each command (the tag makes configure answers
    distinct from one another)."""
    return {
        "configure": args.get("tag", ""),
        "get_stats": "Statistics published",
        "reset_stats": "reset",
        "reboot": "Unknown command",
    }[command]


@pytest.mark.parametrize("kind", ["consumer", "collector"])
def test_every_command_acts_once_with_every_p4p_request_style(
    procs, prefix, tmp_path, ctx, sources, kind
):
    stage = start_stage(procs, prefix, tmp_path, kind)
    status = f"{prefix}:{kind}:1:status"
    ctl = f"{prefix}:{kind}:1:control"
    wait_connected(procs, prefix, kind)
    if kind == "consumer":
        sources[0].publish(range(1, N_FRAMES + 1))
    else:
        publish_interleaved(sources, range(1, N_FRAMES + 1))
    # The collector holds the last frames in its cache (4) until more come or it stops.
    processed = N_FRAMES if kind == "consumer" else N_FRAMES - 3
    wait_for(
        lambda: fresh_status(1, kind, prefix)["processorStats"]["nProcessed"] >= processed,
        20,
        "the frames to be processed",
        procs=procs,
    )

    answers = P4pMonitor(ctx, ctl)
    answers.wait_count(1, 10)
    object_id = p4p_get(ctx, status)["objectId"]
    sent_configs = []
    windows = []  # (command, answer, first monitor index of its put)
    for style, kw in STYLES.items():
        for command in ("configure", "get_stats", "reset_stats", "reboot"):
            args = {"tag": f"{command} with {style}", "n": len(sent_configs)}
            arg_text = json.dumps(args) if command == "configure" else ""
            expected = answer_of(command, args)
            start = len(answers.snapshot())
            windows.append((command, expected, start))
            ctx.put(ctl, {"command": command, "args": arg_text}, **kw)

            def answered(command=command, expected=expected, start=start):
                return any(
                    v["command"] == command and expected in v["statusMessage"]
                    for v in answers.snapshot()[start:]
                )

            wait_for(answered, 10, f"the answer to {command} put with {style}", procs=procs)
            if command == "configure":
                sent_configs.append(args)
            if command in ("get_stats", "reset_stats"):
                object_id += 1
            # A status published once per get_stats/reset_stats, never for the others.
            wait_for(
                lambda n=object_id: ctx.get(status)["objectId"] >= n,
                10,
                f"the status after {command} with {style}",
            )
            st = ctx.get(status)
            assert st["objectId"] == object_id, (command, style)
            if command == "reset_stats":
                assert st["processorStats"]["nProcessed"] == 0, style

    # Commands are handled in order: once our own (pvaccess) put is answered, any
    # second action of a p4p put would have shown.
    assert "Statistics published" in control(ctl, "get_stats")
    st = p4p_get(ctx, status)
    assert st["objectId"] == object_id + 1
    assert st["userStats"]["nConfigures"] == len(STYLES)
    assert st["userStats"]["nResets"] == len(STYLES)

    # Each put was answered exactly once, and nothing else came in its window.
    values = answers.snapshot()
    bounds = [w[2] for w in windows[1:]] + [len(values)]
    for (command, expected, start), end in zip(windows, bounds):
        window = values[start:end]
        # Our own get_stats (the last window's end) shows as get_stats.
        own = [v for v in window if v["command"] != command]
        if end == len(values):
            assert all(v["command"] == "get_stats" for v in own), own
        else:
            assert own == [], (command, [(v["command"], v["statusMessage"]) for v in window])
        hits = [v for v in window if v["command"] == command and expected in v["statusMessage"]]
        assert len(hits) == 1, (command, expected, [v["statusMessage"] for v in window])
    answers.close()

    assert stage.stop() == 0
    with open(tmp_path / f"{kind}-1.json") as f:
        seen = json.load(f)
    assert seen["configured"] == sent_configs  # each configure reached the processor once
    assert seen["ids"] == list(range(1, N_FRAMES + 1))


@pytest.mark.parametrize("kind", ["consumer", "collector"])
def test_stop_with_every_p4p_request_style_ends_the_stage_with_status_0(
    procs, prefix, tmp_path, ctx, sources, kind
):
    """Five stages (consumer: one command with -nc 5; collector: five processes), each
    stopped by a put of another style."""
    n = len(STYLES)
    if kind == "consumer":
        stages = [start_stage(procs, prefix, tmp_path, kind, "-nc", str(n))]
    else:
        stages = [
            start_stage(procs, prefix, tmp_path, kind, "-id", str(i), name=f"collector{i}")
            for i in range(1, n + 1)
        ]
    monitors = {}
    for i in range(1, n + 1):
        p4p_get(ctx, f"{prefix}:{kind}:{i}:control", 30)
        wait_connected(procs, prefix, kind, i)
        monitors[i] = P4pMonitor(ctx, f"{prefix}:{kind}:{i}:control")
        monitors[i].wait_count(1, 10)

    def finals(i: int) -> list[dict]:
        proc = stages[0] if kind == "consumer" else stages[i - 1]
        return [r for r in json_reports(proc) if r.get("final") and r.get(f"{kind}Id") == i]

    def gone(channel: str) -> bool:
        try:
            ctx.get(channel, timeout=0.5)
        except TimeoutError:
            return True
        return False

    for i, (style, kw) in enumerate(STYLES.items(), 1):
        ctx.put(f"{prefix}:{kind}:{i}:control", {"command": "stop", "args": ""}, **kw)
        wait_for(
            lambda i=i: any(
                v["command"] == "stop" and "Stopping" in v["statusMessage"]
                for v in monitors[i].snapshot()
            ),
            10,
            f"the answer to stop put with {style}",
        )
        if kind == "collector":
            assert stages[i - 1].wait(20) == 0, style
        wait_for(
            lambda i=i: gone(f"{prefix}:{kind}:{i}:control"),
            20,
            f"{kind} {i} to stop after a put with {style}",
        )
        # The others go on: their control channels still answer.
        for j in range(i + 1, n + 1):
            assert p4p_get(ctx, f"{prefix}:{kind}:{j}:control", 5)[f"{kind}Id"] == j
    if kind == "consumer":
        assert stages[0].wait(20) == 0
    # One final report each, and each stage ended when its own put came (in put order;
    # with -nc the parent prints its children's final reports when the last one ends).
    ends = []
    for i in range(1, n + 1):
        assert len(finals(i)) == 1, i
        ends.append(finals(i)[0]["processorStats"]["endTime"])
        with open(tmp_path / f"{kind}-{i}.json") as f:
            assert json.load(f)["stopped"] is True
    assert ends == sorted(ends)
    if kind == "consumer":
        assert sorted(final_reports(stages[0])) == list(range(1, n + 1))
    for m in monitors.values():
        m.close()
