"""Our consumer with the latency bookkeeping switched off, to measure what it costs.

Same command line as ``pvhpc consumer``. Only for ``benchmarks/run.py``: it replaces
the stage's timestamp reader so that no frame is timed.
"""

import sys

import pvhpc.runtime.stage
from pvhpc.cli.consumer import main

pvhpc.runtime.stage._timestamp_reader = lambda pv: False

if __name__ == "__main__":
    sys.exit(main())
