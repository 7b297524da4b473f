"""The workflow the launcher tests run on several hosts: a simulator, 4 consumers
sharing its stream through the distributor (spread over two hosts), and a collector
putting their outputs back in order; and what to read back from a run."""

from __future__ import annotations

import json
import os
import re
import sys

from harness import ROOT
from pvhpc.workflow.process import final_reports, json_lines

#: How the hosts run pvhpc: this interpreter, this checkout's sources.
PVHPC_COMMAND = f"env PYTHONPATH={ROOT}/src {sys.executable} -m pvhpc"


def spread_workflow(
    launcher: str,
    consumers: list,
    collector,
    sim,
    *,
    frames_s: float = 3,
    fps: int = 40,
    extra: str = "",
) -> str:
    """The workflow file: ``consumers`` is the consumer stage's ``host:`` list,
    ``collector`` and ``sim`` their hosts; ``extra`` goes at the top level."""

    def host(value) -> str:
        return json.dumps(value)

    return f"""\
name: spread
launcher: {launcher}
pvhpc-command: {json.dumps(PVHPC_COMMAND)}
{extra}
stages:
  process:
    type: consumer
    input-channel: image
    output-channel: "process:*:output"
    n-consumers: 4
    distributor-updates: 1
    server-queue-size: 100
    log-level: info
    host: {host(consumers)}
  collect:
    type: collector
    input-channel: "process:*:output"
    producer-id-list: [1, 2, 3, 4]
    collector-cache-size: 40
    server-queue-size: 100
    host: {host(collector)}
  sim:
    type: sim
    channel-name: image
    n-x-pixels: 16
    n-y-pixels: 16
    frame-rate: {fps}
    runtime: {frames_s}
    start-delay: 0.5
    shutdown-delay: 5
    host: {host(sim)}
"""


def stage_reports(log_dir: str, stage_file: str, id_name: str) -> dict[int, dict]:
    """The final (or latest) JSON report per id that a stage's ``.out`` holds."""
    with open(os.path.join(log_dir, f"{stage_file}.out"), errors="replace") as f:
        return final_reports(json_lines(f.read()), id_name)


def frames_sent(log_dir: str) -> int:
    """The simulator's final frame count, from its JSON report in ``sim.out``."""
    with open(os.path.join(log_dir, "sim.out"), errors="replace") as f:
        finals = [r for r in json_lines(f.read()) if "nSent" in r and r.get("final")]
    assert finals, "no final report from the simulator"
    return int(finals[-1]["nSent"])


SET_LINE = re.compile(
    r"^  (?P<mark>ok   |loss |LOST |extra|-    ) (?P<label>.+?) <- .*?: (?P<published>\d+) "
    r"published = (?P<processed>\d+) processed",
    re.M,
)


def set_lines(out: str) -> dict[str, tuple[str, int, int]]:
    """The summary's loss-check lines: label -> (mark, published, processed)."""
    return {
        m["label"]: (m["mark"].strip(), int(m["published"]), int(m["processed"]))
        for m in SET_LINE.finditer(out)
    }
