"""Our consumer with its monitor thread under cProfile, to see the per-frame Python work.

    python benchmarks/profile_consumer.py OUT.pstats <pvhpc consumer options>

Same command line as ``pvhpc consumer`` after the output file. The first monitor
callback turns cProfile on for the monitor thread (whose Python thread state the
receiver keeps, so the profiler stays on for every later callback); at exit the
statistics go to ``OUT.pstats`` (read them with ``python -m pstats``). With a
receiver queue (``-rqs``), the processing thread is profiled too. The profiler's own
overhead inflates every figure: compare shares, not absolute times.
"""

import atexit
import cProfile
import sys
import threading

import pvhpc.receiver
import pvhpc.runtime.stage
from pvhpc.cli.consumer import main

_profiles: list[cProfile.Profile] = []
_on = threading.local()


def _profiled(original):
    def wrapper(self, *args):
        if not getattr(_on, "profile", None):
            _on.profile = cProfile.Profile()
            _profiles.append(_on.profile)
            _on.profile.enable()
        return original(self, *args)

    return wrapper


def _dump(path: str) -> None:
    if not _profiles:
        return
    for p in _profiles:
        p.disable()
    merged = _profiles[0]
    merged.create_stats()
    import pstats

    stats = pstats.Stats(merged)
    for p in _profiles[1:]:
        p.create_stats()
        stats.add(p)
    stats.dump_stats(path)


if __name__ == "__main__":
    out = sys.argv.pop(1)
    atexit.register(_dump, out)
    pvhpc.receiver.Receiver._on_update = _profiled(pvhpc.receiver.Receiver._on_update)
    pvhpc.runtime.stage.Stage._processing_loop = _profiled(
        pvhpc.runtime.stage.Stage._processing_loop
    )
    sys.exit(main())
