"""Simulator CPU and rate, ours against the reference, in one short run.

    .venv/bin/python benchmarks/simcpu.py                     # 1, 5, 10, 20 kHz, 3 repeats
    .venv/bin/python benchmarks/simcpu.py -r 5000 -n 5 -s 4   # one rate, 5 repeats, 4 s each
    .venv/bin/python benchmarks/simcpu.py --base HEAD~3       # also ours as of a commit

The same measurement as section 3 of ``benchmarks/run.py`` (``measure.sim_run``): each
simulator serves 128x128 uint8 frames to one bare monitor with a server queue; the
CPU of the simulator process (all its threads) is taken over the span between the
monitor's first and last arrival, and the rate is what the monitor counted over that
span. Ours and the reference run alternately (the order flips every repeat), so
that load from other work on a shared machine falls on both; the table gives
medians and the median of the per-repeat ratios ours/reference, the figure to
compare between runs. With ``--base REV``, our simulator as of commit ``REV`` (its
``src/pvhpc`` exported to a temporary folder) takes its turn too, for a before and
after in the same conditions. Every process runs with the loopback EPICS settings and is
bounded in time. Output of every process is kept in ``out/bench/``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import commands as bench  # noqa: E402 - the benchmarks' commands, beside this file
from measure import sim_run  # noqa: E402

from harness import log  # noqa: E402

BASE = "base"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "-r", "--rates", default="1000,5000,10000,20000", help="comma-separated fps [%(default)s]"
    )
    p.add_argument("-n", "--repeats", type=int, default=3, help="runs per simulator and rate [3]")
    p.add_argument("-s", "--seconds", type=float, default=3.0, help="publishing time per run [3]")
    p.add_argument("--base", metavar="REV", help="also run our simulator as of this commit")
    p.add_argument("--json", help="also write the raw runs to this file")
    args = p.parse_args(argv)
    rates = [float(r) for r in args.rates.split(",") if r.strip()]
    if not rates or args.repeats < 1 or not 0 < args.seconds <= 60:
        p.error("need at least one rate, one repeat and 0 < seconds <= 60")
    bench.LOGDIR.mkdir(parents=True, exist_ok=True)
    impls = [bench.OURS, bench.REF]
    commands = {bench.OURS: bench.OUR_CMD}
    if args.base:
        tmp = tempfile.mkdtemp(prefix="pvhpc-base-")
        archive = subprocess.run(
            ["git", "archive", args.base, "src/pvhpc"],
            cwd=bench.ROOT,
            capture_output=True,
            check=False,
        )
        if archive.returncode:
            p.error(f"--base: {archive.stderr.decode().strip()}")
        subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
        src = str(Path(tmp) / "src")
        commands[BASE] = [
            bench.PY,
            "-c",
            f"import sys; sys.path.insert(0, {src!r}); from pvhpc.cli.main import main; "
            "sys.exit(main())",
        ]
        impls.insert(1, BASE)
    raw: dict[str, dict[str, list[dict]]] = {impl: {} for impl in impls}
    try:
        measure(impls, commands, rates, args, raw)
    finally:
        if args.base:
            shutil.rmtree(tmp, ignore_errors=True)
    report(impls, rates, args.repeats, raw)
    if args.json:
        Path(args.json).write_text(json.dumps(raw, indent=1))
    return 0


def measure(impls, commands, rates, args, raw) -> None:
    for rate in rates:
        for rep in range(args.repeats):
            for impl in impls if rep % 2 == 0 else impls[::-1]:
                # Our simulator at another commit is measured as "ours" with another command.
                bench.OUR_CMD = commands.get(impl, commands[bench.OURS])
                r = sim_run(bench.REF if impl == bench.REF else bench.OURS, rate, args.seconds)
                log(
                    f"  {impl:9s} {rate:7g} fps #{rep + 1}: "
                    + (
                        r["error"]
                        if "error" in r
                        else f"{r['measured']:.1f} fps, cpu {r['cpuPercent']:.1f} %"
                    )
                )
                raw[impl].setdefault(f"{rate:g}", []).append(r)


def report(impls, rates, repeats, raw) -> None:
    head = f"{'requested':>9}"
    for impl in impls:
        head += f" | {impl[:9]:>9} {'error':>7} {'CPU':>6}"
    for impl in impls[:-1]:
        head += f" | CPU {impl}/ref"
    print(f"\nmedians of {repeats} runs; ratios: median of the per-repeat ratios (range)")
    print(head)
    for rate in rates:
        key = f"{rate:g}"
        line = f"{rate:9g}"
        for impl in impls:
            runs = [r for r in raw[impl][key] if "error" not in r]
            fps = statistics.median(r["measured"] for r in runs) if runs else 0.0
            cpu = statistics.median(r["cpuPercent"] for r in runs) if runs else 0.0
            line += f" | {fps:9.1f} {100 * (fps / rate - 1):+6.2f}% {cpu:5.1f}%"
        for impl in impls[:-1]:
            pairs = [
                a["cpuPercent"] / b["cpuPercent"]
                for a, b in zip(raw[impl][key], raw[bench.REF][key], strict=True)
                if "error" not in a and "error" not in b and b["cpuPercent"] > 0
            ]
            ratio = f"{statistics.median(pairs):.2f}" if pairs else "-"
            spread = f" ({min(pairs):.2f}-{max(pairs):.2f})" if len(pairs) > 1 else ""
            line += f" | {ratio}{spread}"
        print(line)


if __name__ == "__main__":
    sys.exit(main())
